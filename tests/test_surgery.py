"""Model surgery on torchvision and Hugging Face models: every activation replaced, shared instances unshared,
forward values unchanged, inplace ReLUs still correct, and clear errors when nothing matches."""

import copy
from functools import lru_cache

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from helu_lightning.activations import HeLU, NaiveHeLU
from helu_lightning.surgery import find_activations, replace_activations


@lru_cache(maxsize=1)
def _resnet_template() -> nn.Module:
    torch.manual_seed(0)
    return resnet18(weights=None, num_classes=10)


def _resnet() -> nn.Module:
    """A fresh copy of one seeded torchvision resnet18 (same weights every call; building it is the slow part)."""
    return copy.deepcopy(_resnet_template())


def _relu_names(model: nn.Module) -> set[str]:
    return {name for name, m in model.named_modules() if isinstance(m, nn.ReLU)}


def test_resnet18_every_relu_replaced_including_the_reused_block_relu():
    model = _resnet()
    expected = _relu_names(model)
    assert "layer1.0.relu" in expected and len(expected) == 9  # stem + one per BasicBlock, each called twice
    names = replace_activations(model, {"name": "helu", "alpha": 0.01})
    assert set(names) == expected and len(names) == len(expected)
    assert not _relu_names(model)
    helus = [m for m in model.modules() if isinstance(m, HeLU)]
    assert len(helus) == 9 and len({id(m) for m in helus}) == 9
    assert all(m.alpha.item() == pytest.approx(0.01) for m in helus)


@pytest.mark.parametrize("train", [True, False])
def test_forward_values_equal_relu_model(train):
    relu_model = _resnet().train(train)
    helu_model = _resnet().train(train)
    replace_activations(helu_model, "helu")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(helu_model(x), relu_model(x))


@pytest.mark.slow
def test_inplace_relu_replacement_gradient_equals_non_inplace_reference():
    model = _resnet()
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))  # torchvision's inplace=True
    reference = _resnet()
    alpha = 0.05
    replace_activations(model, {"name": "helu", "alpha": alpha})
    replace_activations(reference, lambda: NaiveHeLU(float(torch.tensor(alpha))))  # saves its input, no inplace
    in_band = []

    def count_band(module: nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
        in_band.append(((args[0] > -alpha) & (args[0] < 0)).sum())

    model.layer1[0].relu.register_forward_hook(count_band)
    x = torch.randn(2, 3, 16, 16)
    model(x).square().sum().backward()
    reference(x).square().sum().backward()
    assert sum(in_band) > 0  # the band is populated, so HeLU's gradient differs from ReLU's here
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-6), name


def test_instance_registered_under_two_names_is_unshared():
    act = nn.ReLU()
    model = nn.Sequential(nn.Linear(4, 4), act, nn.Linear(4, 4), act)
    model.extra = act
    names = replace_activations(model, "helu")
    assert sorted(names) == ["1", "3", "extra"]
    assert model[1] is not model[3] and model[3] is not model.extra
    assert all(isinstance(m, HeLU) for m in (model[1], model[3], model.extra))


def test_hf_bert_gelu_activation_replaced():
    from transformers import BertConfig, BertModel
    from transformers.activations import GELUActivation

    config = BertConfig(hidden_act="gelu", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, vocab_size=50)
    model = BertModel(config)
    assert find_activations(model, GELUActivation)
    names = replace_activations(model, "helu")
    assert names == ["encoder.layer.0.intermediate.intermediate_act_fn",
                     "encoder.layer.1.intermediate.intermediate_act_fn"]
    assert isinstance(model.encoder.layer[1].intermediate.intermediate_act_fn, HeLU)
    assert not any(isinstance(m, GELUActivation) for m in model.modules())
    model(input_ids=torch.randint(0, 50, (2, 5))).last_hidden_state.sum().backward()


def test_no_target_raises_and_strict_false_returns_empty():
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    with pytest.raises(ValueError, match=r"no activation of type .*ReLU.*Tanh.*strict=False"):
        replace_activations(model, "helu")
    assert replace_activations(model, "helu", strict=False) == []
    assert isinstance(model[1], nn.Tanh)


def test_helu_back_to_relu_for_export():
    model = nn.Sequential(nn.Linear(3, 3), HeLU(), nn.Sequential(NaiveHeLU(), nn.GELU()))
    names = replace_activations(model, nn.ReLU, targets=(HeLU, NaiveHeLU))
    assert names == ["1", "2.0"]
    assert isinstance(model[1], nn.ReLU) and isinstance(model[2][0], nn.ReLU) and isinstance(model[2][1], nn.GELU)


def test_bad_targets_and_factories_raise():
    model = nn.Sequential(nn.ReLU())
    with pytest.raises(TypeError, match="targets must be nn.Module classes"):
        replace_activations(model, "helu", targets=("ReLU",))
    with pytest.raises(TypeError, match="not an nn.Module"):
        replace_activations(model, lambda: torch.relu)
    assert find_activations(model, nn.ReLU) == ["0"]
    assert find_activations(nn.ReLU(), nn.ReLU) == []  # the root itself is never a target


def test_default_targets_are_relu_gelu_and_every_hf_gelu_class():
    from transformers import activations as hf

    from helu_lightning.surgery import default_targets

    hf_names = ("GELUActivation", "NewGELUActivation", "FastGELUActivation", "QuickGELUActivation",
                "AccurateGELUActivation", "GELUTanh", "PytorchGELUTanh")
    expected = {nn.ReLU, nn.GELU} | {getattr(hf, n) for n in hf_names if hasattr(hf, n)}  # aliases count once
    assert set(default_targets()) == expected and len(default_targets()) == len(expected)


def test_nothing_to_replace_names_the_model_and_the_activations_it_has():
    class Swish(nn.Module):  # an activation only by the name of its module, as Hugging Face's are
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(x)

    Swish.__module__ = "somelib.activations"
    model = nn.Sequential(nn.Linear(2, 2), nn.SiLU(), Swish())
    with pytest.raises(ValueError, match=r"no activation of type \['ReLU'\] found in Sequential; it has SiLU, Swish"):
        replace_activations(model, "helu", targets=nn.ReLU)
    with pytest.raises(ValueError, match=r"found in Linear\. Pass targets"):
        replace_activations(nn.Linear(2, 2), "helu", targets=nn.ReLU)


def test_factory_returning_a_non_module_is_named():
    with pytest.raises(TypeError, match="the activation factory returned builtin_function_or_method, not an nn.Module"):
        replace_activations(nn.Sequential(nn.ReLU()), lambda: torch.relu)


def test_a_module_registered_twice_is_found_under_both_names():
    shared = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), shared, shared)
    assert find_activations(model) == ["1", "2"]


def _tiny_hf(family: str) -> tuple[nn.Module, str]:
    """A seeded tiny model of ``family`` built locally (no download), and the config key naming its activation."""
    import transformers as tf

    torch.manual_seed(0)
    attention = {"num_attention_heads": 2, "vocab_size": 40}
    if family == "bert/minilm":  # MiniLM checkpoints are BertModel with hidden_act
        return tf.BertModel(tf.BertConfig(hidden_size=16, num_hidden_layers=2, intermediate_size=20,
                                          **attention)), "hidden_act"
    if family == "distilbert":
        return tf.DistilBertModel(tf.DistilBertConfig(dim=16, n_layers=2, n_heads=2, hidden_dim=20,
                                                      vocab_size=40)), "activation"
    if family == "gpt2":
        return tf.GPT2Model(tf.GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=40, n_positions=16,
                                          bos_token_id=0, eos_token_id=0)), "activation_function"
    if family in ("t5", "t5-gated"):
        proj = "gated-gelu" if family == "t5-gated" else "relu"
        return tf.T5EncoderModel(tf.T5Config(d_model=16, d_ff=20, d_kv=8, num_layers=2, num_heads=2, vocab_size=40,
                                             feed_forward_proj=proj)), "dense_act_fn"
    if family == "bart":
        return tf.BartModel(tf.BartConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                          decoder_attention_heads=2, encoder_ffn_dim=20, decoder_ffn_dim=20,
                                          vocab_size=40, max_position_embeddings=32)), "activation_function"
    raise ValueError(family)


def _hf_outputs(model: nn.Module, input_ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The last hidden state and every parameter's gradient of its sum of squares (model in eval: no dropout)."""
    model.eval().zero_grad()
    out = model(input_ids=input_ids, decoder_input_ids=input_ids) if "Bart" in type(model).__name__ else \
        model(input_ids=input_ids)
    out.last_hidden_state.square().sum().backward()
    return out.last_hidden_state.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                            if p.grad is not None}


@pytest.mark.parametrize("family", ["bert/minilm", "distilbert", "gpt2", "t5", "t5-gated", "bart"])
def test_hf_round_trip_rebuilds_helu_with_each_modules_alpha(family, tmp_path, recwarn):
    from helu_lightning.hf_config import LossyActivationConfigWarning

    model, key = _tiny_hf(family)
    names = replace_activations(model, {"name": "helu", "alpha": 0.05})
    helus = [model.get_submodule(n) for n in names]
    for i, module in enumerate(helus):  # distinct alphas, as an AlphaScheduler with groups leaves them
        module.set_alpha(0.05 * (i + 1))
    assert getattr(model.config, key).endswith("helu")
    assert model.config.helu_activation == {"name": "helu", "alpha": 0.05}
    model.save_pretrained(tmp_path)
    assert not [w for w in recwarn if issubclass(w.category, LossyActivationConfigWarning)]

    loaded = type(model).from_pretrained(tmp_path)
    assert [n for n, m in loaded.named_modules() if isinstance(m, HeLU)] == names
    assert [float(loaded.get_submodule(n).alpha) for n in names] == [float(m.alpha) for m in helus]
    input_ids = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(1))
    out, grads = _hf_outputs(model, input_ids)
    out_loaded, grads_loaded = _hf_outputs(loaded, input_ids)
    assert torch.equal(out, out_loaded)
    assert grads.keys() == grads_loaded.keys()
    assert all(torch.equal(grads[n], grads_loaded[n]) for n in grads)
    # HeLU's gradient: it passes where -alpha < x < 0, where ReLU's (and so the model before surgery) is zero.
    act = loaded.get_submodule(names[-1])
    x = torch.tensor([-2.0, -0.04, 0.5], requires_grad=True)
    act(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0]


def test_hf_surgery_with_an_unnamed_factory_warns_now_and_at_save(tmp_path):
    from transformers import BertConfig, BertModel

    from helu_lightning.hf_config import LossyActivationConfigWarning

    model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
                                 vocab_size=40))
    lost = r"encoder\.layer\.0\.intermediate\.intermediate_act_fn: NaiveHeLU\(alpha=0\.05\) here, GELUActivation"
    with pytest.warns(LossyActivationConfigWarning, match="^replace_activations: .*" + lost):
        replace_activations(model, lambda: NaiveHeLU(0.05))
    assert model.config.hidden_act == "gelu"
    with pytest.warns(LossyActivationConfigWarning, match="^save_pretrained: .*" + lost + ".*replace_activations"):
        model.save_pretrained(tmp_path)


def test_hf_surgery_on_the_body_only_warns_at_save_that_the_head_would_change(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    from helu_lightning.hf_config import LossyActivationConfigWarning

    model = BertForMaskedLM(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=20, vocab_size=40))
    replace_activations(model.bert, "helu")  # the MLM head's transform_act_fn also reads hidden_act
    assert model.config.hidden_act == "helu"
    with pytest.warns(LossyActivationConfigWarning,
                      match=r"cls\.predictions\.transform\.transform_act_fn: GELUActivation\(\) here, HeLU after"):
        model.save_pretrained(tmp_path)


def test_hf_model_inside_a_wrapper_gets_its_config_updated():
    from transformers import DistilBertConfig, DistilBertModel

    wrapper = nn.ModuleDict({"body": DistilBertModel(DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=20,
                                                                      vocab_size=40))})
    replace_activations(wrapper, "relu")
    assert wrapper["body"].config.activation == "relu"
    assert not hasattr(wrapper["body"].config, "helu_activation")
