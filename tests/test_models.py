"""Backbones: shapes, published sizes, activations only from the factory, and clear errors for bad names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helu_lightning import HeLU, activation_factory
from helu_lightning.models import (
    CifarResNet,
    SmallCNN,
    WideResNet,
    available_backbones,
    build_backbone,
    register_backbone,
    resnet18_cifar,
)


class Marker(nn.Module):
    """An activation that records every instance the factory made, so tests can find them in the model."""

    made: list[Marker] = []

    def __init__(self) -> None:
        super().__init__()
        Marker.made.append(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


@pytest.fixture(autouse=True)
def _fresh_marker(one_thread: None) -> None:
    Marker.made = []


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def activations_of(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize(
    ("name", "options", "shape"),
    [
        ("small_cnn", {"image_size": 8}, (1, 8, 8)),
        ("small_cnn", {"image_size": 28}, (1, 28, 28)),
        ("resnet18_cifar", {"width": 8}, (3, 32, 32)),
        ("wide_resnet", {"depth": 10, "width": 1}, (3, 32, 32)),
        ("torchvision:resnet18", {}, (3, 32, 32)),
    ],
)
def test_every_activation_comes_from_the_factory(name: str, options: dict, shape: tuple) -> None:
    model = build_backbone(name, 7, Marker, in_channels=shape[0], **options)
    assert model(torch.randn(2, *shape)).shape == (2, 7)
    found = activations_of(model, Marker)
    assert found and {id(m) for m in found} == {id(m) for m in Marker.made}
    assert not activations_of(model, nn.ReLU) and not activations_of(model, nn.GELU)


def test_spec_sets_alpha_on_every_helu() -> None:
    model = build_backbone("wide_resnet", 10, activation_factory({"name": "helu", "alpha": 0.001}), depth=10,
                           width=1)
    helus = activations_of(model, HeLU)
    # WRN-10: one block per stage x 3 stages x 2 activations, plus the final BN-act.
    assert len(helus) == 7
    assert all(h.alpha.item() == pytest.approx(0.001) for h in helus)


def test_wrn_40_4_matches_the_published_size() -> None:
    model = WideResNet(10, nn.ReLU, depth=40, width=4)
    # Zagoruyko & Komodakis report WRN-40-4 at 8.9M parameters (CIFAR-10).
    assert 8.85e6 < n_params(model) < 8.95e6
    assert len(activations_of(model, nn.ReLU)) == 6 * 6 + 1
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_wrn_dropout_sits_between_the_two_convs() -> None:
    model = WideResNet(10, nn.ReLU, depth=10, width=2, dropout=0.3)
    drops = activations_of(model, nn.Dropout)
    assert len(drops) == 3 and all(d.p == 0.3 for d in drops)


def test_cifar_resnet18_stem_and_size() -> None:
    model = resnet18_cifar(10, nn.ReLU)
    # The usual CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool) has 11,173,962 parameters for 10 classes.
    assert n_params(model) == 11_173_962
    stem = model.stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not activations_of(model, nn.MaxPool2d)
    assert isinstance(model, CifarResNet)


def test_small_cnn_head_follows_image_size() -> None:
    assert SmallCNN(10, nn.ReLU, image_size=8, width=4).head[-1].in_features == 8 * 2 * 2
    assert SmallCNN(10, nn.ReLU, image_size=28, width=4).head[-1].in_features == 8 * 7 * 7
    with pytest.raises(ValueError, match="at least 4x4"):
        SmallCNN(10, nn.ReLU, image_size=2)


def test_torchvision_model_swaps_all_relus_and_takes_grey_input() -> None:
    reference = build_backbone("torchvision:resnet18", 10, activation_factory("relu"))
    n_relu = len(activations_of(reference, nn.ReLU))
    model = build_backbone("torchvision:resnet18", 10, activation_factory("helu"), in_channels=1)
    assert len(activations_of(model, HeLU)) == n_relu == 9
    assert model.conv1.in_channels == 1 and model.fc.out_features == 10
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_torchvision_replace_names_other_activation_types() -> None:
    model = build_backbone("torchvision:mobilenet_v2", 10, activation_factory("helu"), replace=["ReLU6"])
    assert not activations_of(model, nn.ReLU6) and len(activations_of(model, HeLU)) == 35
    with pytest.raises(ValueError, match="no activation of type"):
        build_backbone("torchvision:mobilenet_v2", 10, activation_factory("helu"))
    with pytest.raises(ValueError, match="'Relu6' is not one"):
        build_backbone("torchvision:mobilenet_v2", 10, activation_factory("helu"), replace=["Relu6"])


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match="Did you mean 'wide_resnet'.*resnet18_cifar, small_cnn, wide_resnet"):
        build_backbone("wide_resnt", 10, activation_factory("helu"))
    with pytest.raises(ValueError, match="unknown torchvision classification model 'resnet19'.*resnet18"):
        build_backbone("torchvision:resnet19", 10, activation_factory("helu"))
    with pytest.raises(TypeError, match="backbone 'wide_resnet' does not take options \\['depht'\\]"):
        build_backbone("wide_resnet", 10, activation_factory("helu"), depht=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 12}, "depth must be 6n \\+ 4"),
        ({"width": 0}, "width .* must be >= 1"),
        ({"dropout": 1.0}, "dropout must be in \\[0, 1\\)"),
    ],
)
def test_wrn_rejects_bad_shapes(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WideResNet(10, nn.ReLU, **kwargs)


def test_bad_class_or_channel_counts_and_activation_names() -> None:
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        build_backbone("small_cnn", 1, activation_factory("helu"))
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        build_backbone("small_cnn", 10, activation_factory("helu"), in_channels=0)
    with pytest.raises(ValueError, match="unknown activation 'hellu'"):
        build_backbone("small_cnn", 10, activation_factory("hellu"))


def test_register_backbone() -> None:
    def tiny(num_classes: int, act, in_channels: int = 3) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 4, num_classes), act())

    register_backbone("tiny_test_net", tiny)
    try:
        assert "tiny_test_net" in available_backbones()
        model = build_backbone("tiny_test_net", 3, activation_factory({"name": "helu", "alpha": 0.2}),
                               in_channels=1)
        assert model(torch.randn(5, 1, 2, 2)).shape == (5, 3) and model[2].alpha.item() == pytest.approx(0.2)
        with pytest.raises(ValueError, match="already registered"):
            register_backbone("tiny_test_net", tiny)
        with pytest.raises(ValueError, match="reserved for torchvision"):
            register_backbone("torchvision:x", tiny)
    finally:
        from helu_lightning.models import registry

        registry._BACKBONES.pop("tiny_test_net", None)


@pytest.mark.parametrize("spec", ["helu", {"name": "helu"}, HeLU()])
def test_builders_take_a_factory_not_a_spec(spec):
    from helu_lightning.models.text import build_sequence_classifier

    with pytest.raises(TypeError, match="build_backbone takes a zero-argument activation factory"):
        build_backbone("small_cnn", 10, spec)
    with pytest.raises(TypeError, match="build_sequence_classifier takes a zero-argument activation factory"):
        build_sequence_classifier(2, spec, model_config={"model_type": "bert", "hidden_size": 32,
                                                         "num_hidden_layers": 1, "num_attention_heads": 2,
                                                         "intermediate_size": 37, "vocab_size": 50})
