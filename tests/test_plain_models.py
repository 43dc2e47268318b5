"""plain_mlp and plain_cnn: depth, width and norm build what they say, every activation comes from the factory,
the task sizes them for the image, bad options are refused, and a ReLU stack without normalisation loses units
that HeLU's band keeps alive (the study these backbones exist for)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helu_lightning import HeLU, activation_factory
from helu_lightning.models import PlainCNN, PlainMLP, available_backbones, build_backbone
from helu_lightning.tasks.vision import VisionClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


def count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("name, cls, layer, norm_layer", [("plain_mlp", PlainMLP, nn.Linear, nn.BatchNorm1d),
                                                          ("plain_cnn", PlainCNN, nn.Conv2d, nn.BatchNorm2d)])
@pytest.mark.parametrize("depth", [1, 4, 12])
@pytest.mark.parametrize("norm", ["none", "batch"])
@pytest.mark.parametrize("image_size, channels", [(8, 1), (28, 1), (16, 3)])
def test_depth_width_and_norm_build_what_they_say(name, cls, layer, norm_layer, depth, norm, image_size, channels):
    model = build_backbone(name, 7, activation_factory({"name": "helu", "alpha": 0.3}), in_channels=channels,
                           image_size=image_size, depth=depth, width=6, norm=norm)
    assert isinstance(model, cls) and name in available_backbones()
    helus = [m for m in model.modules() if isinstance(m, HeLU)]
    assert len(helus) == depth and len({id(h) for h in helus}) == depth
    assert all(h.alpha.item() == pytest.approx(0.3) for h in helus)
    hidden = [m for m in model.features if isinstance(m, layer)]
    assert len(hidden) == depth and all(getattr(m, "out_features", getattr(m, "out_channels", None)) == 6
                                        for m in hidden)
    # BatchNorm before every activation makes the layer's bias redundant; without it the bias is kept.
    assert count(model, norm_layer) == (depth if norm == "batch" else 0)
    assert all((m.bias is None) == (norm == "batch") for m in hidden)
    assert not any(isinstance(m, (nn.ReLU, nn.GELU, nn.Dropout)) for m in model.modules())
    out = model(torch.randn(3, channels, image_size, image_size))
    assert out.shape == (3, 7)


def test_the_task_passes_the_image_size() -> None:
    task = VisionClassifier(backbone="plain_mlp", num_classes=10, in_channels=1, image_size=28,
                            backbone_options={"depth": 2, "width": 5})
    assert task.model.features[1].in_features == 28 * 28
    assert task(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"built for 784 input values .* shape \(1, 8, 8\); set image_size"):
        task(torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize("name", ["plain_mlp", "plain_cnn"])
@pytest.mark.parametrize("options, message", [
    ({"depth": 0}, "depth must be the number of hidden layers.*got 0"),
    ({"depth": 2.5}, "depth must be .*got 2.5"),
    ({"width": 0}, "width must be a positive unit count.*got 0"),
    ({"norm": "layer"}, "norm must be one of none, batch, got 'layer'"),
    ({"image_size": 0}, "image_size must be the input's side"),
    ({"init": "xavier"}, "init must be one of default, kaiming .*got 'xavier'"),
])
def test_bad_options_name_the_value(name: str, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_backbone(name, 10, activation_factory("relu"), in_channels=1, **options)


@pytest.mark.parametrize("name, layer", [("plain_mlp", nn.Linear), ("plain_cnn", nn.Conv2d)])
def test_kaiming_init_sets_he_scale_and_zero_bias(name: str, layer: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, 10, activation_factory("relu"), in_channels=1, image_size=8, depth=3, width=64,
                           init="kaiming")
    for hidden in [m for m in model.features if isinstance(m, layer)][1:]:
        fan_in = hidden.weight[0].numel()
        assert hidden.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)
        assert hidden.weight.mean().abs().item() < 0.1 * (2 / fan_in) ** 0.5
        assert torch.count_nonzero(hidden.bias) == 0
    torch.manual_seed(0)
    default = build_backbone(name, 10, activation_factory("relu"), in_channels=1, image_size=8, depth=3, width=64)
    for hidden in [m for m in default.features if isinstance(m, layer)][1:]:
        # PyTorch's default: uniform(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in), and a non-zero bias
        assert hidden.weight.std().item() == pytest.approx((1 / (3 * hidden.weight[0].numel())) ** 0.5, rel=0.1)
        assert torch.count_nonzero(hidden.bias) > 0


def _pre_activation_scale(init: str) -> tuple[float, float]:
    """Root mean square of the first and the last hidden layer's pre-activations of a depth-12 ReLU MLP."""
    torch.manual_seed(0)
    model = PlainMLP(10, activation_factory("relu"), image_size=16, depth=12, width=256, init=init)
    h, scales = torch.randn(512, 1, 16, 16), []
    with torch.no_grad():
        for module in model.features:
            h = module(h)
            if isinstance(module, nn.Linear):
                scales.append(h.pow(2).mean().sqrt().item())
    return scales[0], scales[-1]


def test_he_init_keeps_the_signal_that_the_default_shrinks() -> None:
    first, last = _pre_activation_scale("default")
    # the default's weight variance 1/(3 fan_in) and ReLU's halving keep a sixth of the second moment per layer,
    # until the bias (uniform +-1/sqrt(fan_in)) sets a floor
    assert last < first / 10
    first, last = _pre_activation_scale("kaiming")
    assert first / 2 < last < first * 2


def _dead_fraction(act: str, seed: int) -> float:
    """Units of a deep plain ReLU-family MLP that output 0 on every input after SGD at a high learning rate."""
    torch.manual_seed(seed)
    model = PlainMLP(4, activation_factory(act), in_channels=1, image_size=4, depth=6, width=16)
    x, y = torch.randn(256, 1, 4, 4), torch.randint(0, 4, (256,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    dead, units = 0, 0
    h = x.flatten(1)
    with torch.no_grad():
        for module in model.features[1:]:
            h = module(h)
            if not isinstance(module, nn.Linear):
                dead += int(((h > 0).sum(0) == 0).sum())
                units += h.shape[1]
    return dead / units


def test_relu_units_die_without_normalisation_and_the_band_keeps_more_alive() -> None:
    relu = sum(_dead_fraction("relu", seed) for seed in range(3)) / 3
    helu = sum(_dead_fraction({"name": "helu", "alpha": 0.5}, seed) for seed in range(3)) / 3
    assert relu > 0.1 and helu < relu
