"""HeLU op and activation registry: exact forward/backward against hand-computed references, alpha handling,
autocast, torch.compile, saved-for-backward memory, the factory, and Hugging Face names."""

import math
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from helu_lightning import activations, registry
from helu_lightning.activations import (
    ActivationFactory,
    ActivationSpec,
    HeLU,
    NaiveHeLU,
    activation_factory,
    available_activations,
    check_alpha,
    helu,
    make_activation,
    register_activation,
    register_hf_activations,
)
from helu_lightning.errors import UserError

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16,
            torch.float16: torch.int16}
BUILTINS = ["relu", "helu", "gelu", "gelu_tanh", "silu", "elu", "leaky_relu", "identity"]


def _edge_values(dtype: torch.dtype, alpha: float = 0.05) -> torch.Tensor:
    """x = 0, -0.0, -alpha, the neighbours of -alpha on either side, inside the band, below it, +-1, +-inf."""
    neg_alpha = torch.tensor(alpha, dtype=torch.float64).to(dtype)  # rounded once, from float64
    neg_alpha = -neg_alpha
    code = neg_alpha.view(INT_VIEW[dtype])
    inside = (code - 1).view(dtype)  # one ulp smaller in magnitude: still in the band
    outside = (code + 1).view(dtype)  # one ulp larger in magnitude: below the band
    values = torch.stack([torch.tensor(v).to(dtype) for v in (0.0, -0.0, -alpha / 2, -1.0, 1.0, 1e-3, -math.inf,
                                                                math.inf)])
    return torch.cat([values, neg_alpha.reshape(1), inside.reshape(1), outside.reshape(1)])


def _reference_grad(x: torch.Tensor, grad: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    return grad * (x > -torch.tensor(alpha, dtype=torch.float64).to(x.dtype))


def _helu_grad(x: torch.Tensor, grad: torch.Tensor, alpha: float = 0.05,
               memory: str = "output") -> tuple[torch.Tensor, torch.Tensor]:
    leaf = x.detach().requires_grad_(True)
    y = HeLU(alpha, memory=memory)(leaf)
    y.backward(grad)
    return y.detach(), leaf.grad


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_equals_relu_on_special_and_random_values(dtype):
    x = torch.cat([_edge_values(dtype), torch.randn(1000, dtype=dtype) * 0.1])
    y = helu(x)
    assert torch.equal(y, torch.relu(x))
    assert y.dtype == dtype and y.shape == x.shape


@pytest.mark.parametrize("memory", ["output", "input"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_keeps_nan_of_either_sign_and_passes_its_gradient_like_relu(dtype, memory):
    int_dtype = INT_VIEW[dtype]
    nan = torch.tensor(float("nan"), dtype=dtype)
    negative_nan = (nan.view(int_dtype) | torch.iinfo(int_dtype).min).view(dtype)  # sign bit set, as x86 makes
    x = torch.stack([nan, negative_nan, torch.tensor(-1.0, dtype=dtype)])
    grad = torch.tensor([2.0, 3.0, 4.0], dtype=dtype)
    y, g = _helu_grad(x, grad, memory=memory)
    assert torch.isnan(y[:2]).all() and y[2] == 0
    relu_leaf = x.clone().requires_grad_(True)
    torch.relu(relu_leaf).backward(grad)
    assert torch.equal(g, relu_leaf.grad)
    assert g.tolist() == [2.0, 3.0, 0.0]


@pytest.mark.parametrize("memory", ["output", "input"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_is_grad_times_band_mask_at_edges(dtype, memory):
    x = _edge_values(dtype)
    grad = torch.arange(1, x.numel() + 1, dtype=dtype)
    _, g = _helu_grad(x, grad, memory=memory)
    assert torch.equal(g, _reference_grad(x, grad))
    # hand-checked: 0, -0.0 and the band pass; -alpha and below are cut; +inf passes, -inf is cut.
    passes = [True, True, True, False, True, True, False, True, False, True, False]
    assert (g != 0).tolist() == passes


@pytest.mark.parametrize("memory", ["output", "input"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced", "channels_last"])
def test_gradient_on_random_tensors_of_every_layout(dtype, layout, memory):
    base = torch.randn(4, 6, 8, 10, dtype=dtype) * 0.1
    x = {
        "contiguous": base,
        "transposed": base.transpose(1, 3),
        "sliced": base[:, ::2, 1:, ::3],
        "channels_last": base.contiguous(memory_format=torch.channels_last),
    }[layout]
    grad = torch.randn(x.shape, dtype=dtype).transpose(0, 1).contiguous().transpose(0, 1)  # a strided grad
    band = ((x > -0.05) & (x <= 0)).sum()
    assert band > 0 and (x <= -0.05).sum() > 0  # the random data reaches band and below
    y, g = _helu_grad(x, grad, memory=memory)
    assert torch.equal(y, torch.relu(x))
    assert torch.equal(g, _reference_grad(x, grad))
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("memory", ["output", "input"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_op_path_used_on_accelerators_is_exact_too(dtype, memory):
    # CUDA and torch.compile take the tensor-op path (no host read of alpha); run it here on CPU.
    x = torch.cat([_edge_values(dtype), torch.randn(200, dtype=dtype) * 0.1])
    grad = torch.randn_like(x)
    with activations.use_kernel("tensor"):
        assert activations.kernel_for(x) == "tensor"
        y, g = _helu_grad(x, grad, memory=memory)
    assert torch.equal(y, torch.relu(x))
    assert torch.equal(g, _reference_grad(x, grad))
    nan = torch.full((2,), float("nan"), dtype=dtype)
    with activations.use_kernel("tensor"):
        y, g = _helu_grad(nan, torch.ones_like(nan), memory=memory)
    assert torch.isnan(y).all() and g.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_twin_of_naive_reference(dtype):
    alpha = float(torch.tensor(0.05, dtype=torch.float64).to(dtype))  # the naive twin compares a Python float
    x = torch.randn(3, 500, dtype=dtype) * 0.2
    grad = torch.randn_like(x)
    fast = x.clone().requires_grad_(True)
    naive = x.clone().requires_grad_(True)
    y_fast = HeLU(alpha)(fast)
    y_naive = NaiveHeLU(alpha)(naive)
    (y_fast * grad).sum().backward()
    (y_naive * grad).sum().backward()
    assert torch.equal(y_fast, y_naive)
    assert torch.equal(fast.grad, naive.grad)
    assert not torch.equal(fast.grad, torch.where(x > 0, grad, 0))  # HeLU is not ReLU here


@pytest.mark.parametrize("memory", ["output", "input"])
def test_double_backward_differentiates_through_the_mask(memory):
    x = torch.tensor([1.0, -0.01, -1.0], requires_grad=True)
    w = torch.tensor([2.0, 3.0, 4.0], requires_grad=True)
    (g,) = torch.autograd.grad((helu(x, memory=memory) * w).sum(), x, create_graph=True)
    assert g.tolist() == [2.0, 3.0, 0.0]
    (gw,) = torch.autograd.grad(g.sum(), w)  # d/dw of w * mask is the mask
    assert gw.tolist() == [1.0, 1.0, 0.0]


def test_no_grad_and_inplace_serve_plain_relu():
    x = torch.tensor([-1.0, -0.01, 0.5])
    with torch.no_grad():
        assert torch.equal(HeLU()(x), torch.relu(x))
        same = HeLU(inplace=True)(x)
    assert same is x and x.tolist() == [0.0, 0.0, 0.5]


def test_memory_input_mode_keeps_the_alpha_of_its_forward():
    module = HeLU(0.05, memory="input")
    leaf = torch.tensor([-0.2, -0.04, 0.3], requires_grad=True)
    y = module(leaf)
    module.set_alpha(0.5)  # a schedule step between forward and backward must not change this step's mask
    y.sum().backward()
    assert leaf.grad.tolist() == [0.0, 1.0, 1.0]
    assert "memory='input'" in repr(module)
    with pytest.raises(ValueError, match="memory must be 'output'.*'input'.*got 'fast'"):
        HeLU(memory="fast")


def test_alpha_buffer_state_dict_round_trip_and_repr():
    module = HeLU(alpha=0.01)
    state = module.state_dict()
    assert set(state) == {"alpha"} and state["alpha"].dim() == 0 and state["alpha"].dtype == torch.float64
    other = HeLU()
    other.load_state_dict(state)
    assert other.alpha.item() == 0.01  # float64: exactly the value given
    assert "alpha=0.01" in repr(other)
    assert "inplace=True" in repr(HeLU(inplace=True))


def test_set_alpha_changes_the_gradient():
    module = HeLU(alpha=0.05)
    x = torch.tensor([-0.2, -0.04, 0.3])
    leaf = x.clone().requires_grad_(True)
    module(leaf).sum().backward()
    assert leaf.grad.tolist() == [0.0, 1.0, 1.0]
    module.set_alpha(0.5)
    leaf = x.clone().requires_grad_(True)
    module(leaf).sum().backward()
    assert leaf.grad.tolist() == [1.0, 1.0, 1.0]
    assert module.alpha.dim() == 0 and module.alpha.item() == 0.5


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), "0.05", True, None, torch.ones(2)])
def test_bad_alpha_raises_naming_the_value(bad):
    with pytest.raises(ValueError, match="alpha must be"):
        HeLU(bad)
    with pytest.raises(ValueError):
        HeLU().set_alpha(bad)
    if not isinstance(bad, torch.Tensor):
        with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(")):
            check_alpha(bad)


def test_alpha_that_rounds_to_zero_in_half_gives_relu_gradient():
    x = torch.tensor([-1e-9, 0.0, 1.0], dtype=torch.float16)  # 1e-9 is 0 in float16
    _, g = _helu_grad(x, torch.ones(3, dtype=torch.float16), alpha=1e-9)
    assert g.tolist() == [0.0, 0.0, 1.0]
    assert torch.equal(g, _reference_grad(x, torch.ones(3, dtype=torch.float16), alpha=1e-9))


def _linear_net(act: nn.Module) -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(16, 32), act, nn.Linear(32, 4))


def test_autocast_bf16_trains_and_matches_the_naive_twin():
    alpha = float(torch.tensor(0.05).to(torch.bfloat16))
    x = torch.randn(64, 16)
    target = torch.randn(64, 4)
    grads = {}
    for name, act in (("helu", HeLU(alpha)), ("naive", NaiveHeLU(alpha))):
        net = _linear_net(act)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = net[0](x)
            assert hidden.dtype == torch.bfloat16
            loss = nn.functional.mse_loss(net(x).float(), target)
        loss.backward()
        grads[name] = net[0].weight.grad
    assert grads["helu"].abs().sum() > 0
    assert torch.equal(grads["helu"], grads["naive"])


@pytest.mark.parametrize("memory", ["output", "input"])
def test_compile_fullgraph_matches_eager_and_alpha_change_does_not_recompile(memory):
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    net = _linear_net(HeLU(0.05, memory=memory))
    x = torch.randn(8, 16) * 0.1

    def grads(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        out = model(x)
        out.sum().backward()
        return out.detach(), net[0].weight.grad.clone()

    eager_out, eager_grad = grads(net)
    counter = CompileCounter()
    compiled = torch.compile(net, backend=counter, fullgraph=True)
    out, grad = grads(compiled)
    assert torch.equal(out, eager_out) and torch.equal(grad, eager_grad)
    net[1].set_alpha(1.0)
    out_wide, grad_wide = grads(compiled)
    assert counter.frame_count == 1  # alpha is a buffer, not a constant baked into the graph
    assert not torch.equal(grad_wide, grad)
    eager_wide = grads(net)[1]
    assert torch.equal(grad_wide, eager_wide) and torch.equal(out_wide, eager_out)
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="Inductor on CPU needs a C++ compiler")
def test_inductor_compiled_helu_is_exact():
    torch._dynamo.reset()
    module = HeLU(0.05)
    compiled = torch.compile(module, dynamic=False)
    x = torch.cat([_edge_values(torch.float32), torch.randn(1000) * 0.1])
    grad = torch.randn_like(x)
    leaf = x.clone().requires_grad_(True)
    y = compiled(leaf)
    y.backward(grad)
    assert torch.equal(y.detach(), torch.relu(x))
    assert torch.equal(leaf.grad, _reference_grad(x, grad))
    torch._dynamo.reset()


def _saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes held for backward, each storage counted once."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x).sum().backward()
    return sum(storages.values())


def test_saved_memory_is_no_more_than_relu():
    def net(act: nn.Module) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), act, nn.Conv2d(8, 8, 3, padding=1))

    x = torch.randn(4, 3, 16, 16)
    activation_bytes = 4 * 8 * 16 * 16 * 4
    relu = _saved_bytes(net(nn.ReLU()), x)
    fast = _saved_bytes(net(HeLU()), x)
    naive = _saved_bytes(net(NaiveHeLU()), x)
    saves_input = _saved_bytes(net(HeLU(memory="input")), x)
    assert fast <= relu
    assert naive >= relu + activation_bytes  # the naive twin keeps the whole fp32 input as well
    assert relu + activation_bytes <= saves_input <= relu + activation_bytes + 64  # input + a 0-dim edge


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_builds_a_fresh_module(name):
    first, second = make_activation(name), make_activation(name)
    assert isinstance(first, nn.Module) and first is not second
    factory = activation_factory(name)
    assert factory() is not factory()
    assert name in available_activations()
    x = torch.linspace(-2, 2, 9)
    assert torch.equal(first(x), second(x))


def test_builtins_compute_what_their_names_say():
    x = torch.linspace(-2, 2, 9)
    assert torch.equal(make_activation("relu")(x), torch.relu(x))
    assert torch.equal(make_activation("identity")(x), x)
    assert torch.allclose(make_activation("gelu_tanh")(x), nn.functional.gelu(x, approximate="tanh"))
    assert make_activation("helu", alpha=0.01).alpha.item() == pytest.approx(0.01)
    assert make_activation("leaky_relu", negative_slope=0.2)(torch.tensor([-1.0])).item() == pytest.approx(-0.2)


def test_unknown_name_lists_known_names_and_closest_match():
    with pytest.raises(ValueError, match="Did you mean 'helu'") as err:
        make_activation("hleu")
    for name in BUILTINS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="unknown activation"):
        activation_factory("nope")


def test_bad_kwargs_raise_at_configuration_time():
    with pytest.raises(TypeError, match="does not take"):
        make_activation("relu", alpha=0.1)
    with pytest.raises(TypeError, match="does not take"):
        activation_factory({"name": "helu", "beta": 2})
    with pytest.raises(ValueError, match="alpha must be"):
        activation_factory({"name": "helu", "alpha": -1})


def test_factory_accepts_name_mapping_spec_and_callable():
    by_name = activation_factory("HeLU")
    assert isinstance(by_name(), HeLU) and by_name.to_dict() == {"name": "helu"}
    by_map = activation_factory({"name": "helu", "alpha": 0.01})
    assert by_map().alpha.item() == pytest.approx(0.01) and by_map.to_dict() == {"name": "helu", "alpha": 0.01}
    by_spec = activation_factory(ActivationSpec(name="leaky_relu", options={"negative_slope": 0.3}))
    assert by_spec().negative_slope == 0.3
    assert activation_factory({"name": "relu", "alpha": None}).to_dict() == {"name": "relu"}
    saves_input = activation_factory({"name": "helu", "alpha": 0.01, "memory": "input"})
    assert saves_input().memory == "input" and saves_input.to_dict()["memory"] == "input"
    assert activation_factory(nn.SiLU) is nn.SiLU
    assert activation_factory(by_map) is by_map


@pytest.mark.parametrize("junk", [3, None, [1, 2], {"alpha": 0.1}, nn.ReLU()])
def test_factory_rejects_junk(junk):
    with pytest.raises((TypeError, ValueError), match="activation|module instance"):
        activation_factory(junk)


def test_factories_pickle():
    factory = activation_factory({"name": "helu", "alpha": 0.02})
    clone = pickle.loads(pickle.dumps(factory))
    assert isinstance(clone, ActivationFactory) and clone.to_dict() == factory.to_dict()
    assert clone().alpha.item() == pytest.approx(0.02)
    assert isinstance(pickle.loads(pickle.dumps(activation_factory("gelu_tanh")))(), nn.GELU)


def test_register_activation_rejects_duplicates_and_bad_input():
    with pytest.raises(ValueError, match="already registered"):
        register_activation("relu", nn.GELU)
    with pytest.raises(TypeError, match="callable"):
        register_activation("x", 3)
    with pytest.raises(TypeError, match="string name"):
        register_activation("", nn.ReLU)


def _tiny_bert_config(hidden_act: str):
    from transformers import BertConfig

    return BertConfig(hidden_act=hidden_act, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=37, vocab_size=50)


def test_helu_is_a_valid_hf_hidden_act():
    from transformers import BertModel

    register_hf_activations()
    model = BertModel(_tiny_bert_config("helu"))
    helus = [m for m in model.modules() if isinstance(m, HeLU)]
    assert len(helus) == 1
    ids = torch.randint(0, 50, (2, 7))
    out = model(input_ids=ids).last_hidden_state
    out.sum().backward()
    assert model.encoder.layer[0].intermediate.dense.weight.grad.abs().sum() > 0


def test_registering_after_transformers_import_makes_the_name_valid_for_hf():
    from transformers import BertModel
    from transformers import activations as hf

    class MyAct(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    try:
        register_activation("myact", MyAct)
        assert isinstance(make_activation("myact"), MyAct)
        model = BertModel(_tiny_bert_config("myact"))
        assert isinstance(model.encoder.layer[0].intermediate.intermediate_act_fn, MyAct)
    finally:
        registry._REGISTRY.pop("myact", None)
        hf.ACT2CLS.pop("myact", None)
        hf.ACT2FN.pop("myact", None)
    assert "myact" not in available_activations()


@pytest.mark.parametrize("bad", [-0.5, 0.0, float("nan"), float("inf")])
@pytest.mark.parametrize("memory", ["output", "input"])
def test_tensor_alpha_of_functional_helu_is_validated(bad, memory):
    x = torch.tensor([-0.3, 0.2], requires_grad=True)
    with pytest.raises(UserError, match=f"alpha must be a positive finite number.*got {bad!r}"):
        helu(x, torch.tensor(bad, dtype=torch.float64), memory=memory)
    with pytest.raises(UserError, match="single float"):
        helu(x, torch.tensor([0.1, 0.2]))


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan"), float("inf")])
def test_load_state_dict_refuses_a_bad_alpha_naming_the_key(bad):
    module = nn.Sequential(HeLU(0.02))
    with pytest.raises(UserError, match=rf"'0.alpha'.*got {bad!r}"):
        module.load_state_dict({"0.alpha": torch.tensor(bad)})
    assert module[0].alpha.item() == 0.02  # left as it was


def test_missing_alpha_in_a_state_dict_comes_up_as_constructed_and_old_float32_alphas_load():
    module = HeLU()
    result = module.load_state_dict({}, strict=False)
    assert result.missing_keys == ["alpha"] and module.alpha.item() == 0.05
    module.load_state_dict({"alpha": torch.tensor(0.25, dtype=torch.float32)})  # checkpoints from before float64
    assert module.alpha.dtype == torch.float64 and module.alpha.item() == 0.25


def test_alpha_is_stored_exactly_and_refused_when_its_buffer_dtype_cannot_hold_it():
    assert HeLU(1e-50).alpha.item() == 1e-50 and HeLU(1e40).alpha.item() == 1e40
    half = HeLU(0.05).half()
    for bad in (1e-50, 1e40):  # 0 and inf in float16
        with pytest.raises(UserError, match=re.escape(f"alpha {bad!r} is ") + ".* float16 buffer"):
            half.set_alpha(bad)
    assert half.alpha.item() == float(torch.tensor(0.05, dtype=torch.float16))
    half.reset_parameters()
    assert half.alpha.item() == float(torch.tensor(0.05, dtype=torch.float16))


@pytest.mark.parametrize("bad", [-1, 0, float("nan"), "0.05", None])
def test_configs_and_cli_reach_alpha_validation_as_user_errors(bad):
    with pytest.raises(UserError, match="alpha must be"):
        make_activation("helu", alpha=bad)
    with pytest.raises(UserError, match="alpha must be"):
        activation_factory({"name": "helu", "alpha": bad} if bad is not None else {"name": "helu", "alpha": "x"})


def test_kernel_switch_is_validated_and_restored():
    assert activations.get_kernel() == "auto"
    x = torch.randn(4)
    assert activations.kernel_for(x) == "bits" and activations.kernel_for(x, differentiable=True) == "tensor"
    assert activations.kernel_for(x.to(torch.int32)) == "tensor"
    with activations.use_kernel("tensor"):
        assert activations.get_kernel() == "tensor" and activations.kernel_for(x) == "tensor"
    assert activations.get_kernel() == "auto"
    with pytest.raises(ValueError, match="kernel must be one of 'auto', 'tensor', 'triton', got 'fast'"):
        activations.set_kernel("fast")


def _run_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


_BUILD_BERT = """
from transformers import BertConfig, BertModel
from helu_lightning import HeLU
config = BertConfig(hidden_act="helu", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=37, vocab_size=50)
act = BertModel(config).encoder.layer[0].intermediate.intermediate_act_fn
assert isinstance(act, HeLU) and act.alpha.item() == 0.05, act
print("ok")
"""


@pytest.mark.parametrize("first", ["helu_lightning", "transformers.activations", "transformers"])
def test_helu_is_a_hf_hidden_act_whatever_the_import_order(first):
    assert _run_python(f"import {first}\nimport helu_lightning\n{_BUILD_BERT}").strip() == "ok"


def test_importing_helu_lightning_does_not_import_transformers():
    code = "import sys, helu_lightning\nprint(sorted(m for m in sys.modules if m.startswith('transformers')))"
    assert _run_python(code).strip() == "[]"


def test_gelu_weights_loaded_as_helu_get_the_default_alpha_and_relu_outputs(tmp_path):
    from transformers import BertModel

    torch.manual_seed(0)
    BertModel(_tiny_bert_config("gelu")).save_pretrained(tmp_path / "gelu")
    ids = torch.randint(0, 50, (2, 7))
    helu_model = BertModel.from_pretrained(tmp_path / "gelu", hidden_act="helu").eval()
    relu_model = BertModel.from_pretrained(tmp_path / "gelu", hidden_act="relu").eval()
    act = helu_model.encoder.layer[0].intermediate.intermediate_act_fn
    assert isinstance(act, HeLU) and act.alpha.dtype == torch.float64 and act.alpha.item() == 0.05
    with torch.no_grad():
        assert torch.equal(helu_model(input_ids=ids).last_hidden_state, relu_model(input_ids=ids).last_hidden_state)
    act.set_alpha(0.02)  # a trained alpha survives save_pretrained / from_pretrained
    helu_model.save_pretrained(tmp_path / "helu")
    again = BertModel.from_pretrained(tmp_path / "helu").encoder.layer[0].intermediate.intermediate_act_fn
    assert isinstance(again, HeLU) and again.alpha.item() == 0.02


def test_repr_shows_alpha_and_only_the_options_that_differ():
    assert repr(HeLU(0.01)) == "HeLU(alpha=0.01)"
    assert repr(HeLU(0.5, inplace=True, memory="input")) == "HeLU(alpha=0.5, inplace=True, memory='input')"


def test_serving_output_is_relu_bit_for_bit():
    """Where no gradient is recorded HeLU is plain ReLU: no -0.0 band markers in what a server returns."""
    x = torch.tensor([-1.0, -0.01, 0.0, 0.5])
    relu_bits = torch.relu(x).view(torch.int32)
    with torch.no_grad():
        assert torch.equal(HeLU()(x.clone().requires_grad_(True)).view(torch.int32), relu_bits)
    assert torch.equal(HeLU()(x).view(torch.int32), relu_bits)  # grad enabled, but x needs none
    marked = HeLU()(x.clone().requires_grad_(True)).detach()
    assert torch.signbit(marked).tolist() == [True, False, False, False]  # training marks -1.0 as below the band


@pytest.mark.parametrize("memory", ["output", "input"])
def test_functional_memory_mode_decides_what_is_saved(memory):
    x = torch.randn(64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = helu(x, 0.05, memory=memory)
    assert any(t is x or t.data_ptr() == x.data_ptr() for t in saved) == (memory == "input")
    assert any(t.data_ptr() == y.data_ptr() for t in saved) == (memory == "output")
