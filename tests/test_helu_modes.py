"""HeLU gives one answer in every execution mode: modes x dtypes x layouts x edge values x memory modes, each
against a reference written in plain float64, plus property-based edge values (hypothesis) and opcheck.
The ``triton_*`` modes force the Triton kernels; without CUDA they run in Triton's interpreter on CPU tensors
(tests/conftest.py sets ``TRITON_INTERPRET=1``)."""

import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import forward_ad
from torch.utils.checkpoint import checkpoint

from helu_lightning import HeLU, helu, use_kernel
from helu_lightning.op import _helu_op, _input_backward_op

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16,
            torch.float16: torch.int16}
LAYOUTS = ["contiguous", "transposed", "channels_last", "sliced"]
MEMORY = ["output", "input"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
TRITON_ON_CPU = os.environ.get("TRITON_INTERPRET") == "1"  # set by conftest.py where there is no GPU


def skip_triton_on_cpu_without_interpreter(mode: str, device: str = "cpu") -> None:
    if mode.startswith("triton") and device == "cpu" and not TRITON_ON_CPU:
        pytest.skip("Triton runs CPU tensors only in its interpreter (TRITON_INTERPRET=1); here it runs on CUDA")


def rounded_alpha(alpha: float, dtype: torch.dtype) -> float:
    """alpha rounded once, from float64, to ``dtype`` (as a float64 number)."""
    return float(torch.tensor(alpha, dtype=torch.float64).to(dtype))


def reference(x: torch.Tensor, grad: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU's value and HeLU's gradient, computed in float64: grad where x > -alpha (NaN passes, as in ReLU),
    0 elsewhere whatever grad is (inf and NaN included); cast back to x's dtype."""
    x64, grad64 = x.double(), grad.double()
    value = torch.where(x64 > 0, x64, torch.where(torch.isnan(x64), x64, 0.0))
    below = x64 <= -rounded_alpha(alpha, x.dtype)
    return value.to(x.dtype), torch.where(below, torch.zeros_like(grad64), grad64).to(x.dtype)


def edge_values(dtype: torch.dtype, alpha: float) -> list[float]:
    """0, -0.0, -alpha and one ulp either side, inside and below the band, +-1, +-inf, NaN of both signs."""
    neg_alpha = torch.tensor(-rounded_alpha(alpha, dtype), dtype=dtype)
    code = neg_alpha.view(INT_VIEW[dtype])
    ulps = [float((code + step).view(dtype)) for step in (-1, 1)] if neg_alpha != 0 else [-1e-30, 1e-30]
    nan = torch.tensor(math.nan, dtype=dtype)
    negative_nan = float((nan.view(INT_VIEW[dtype]) | torch.iinfo(INT_VIEW[dtype]).min).view(dtype))
    return [0.0, -0.0, float(neg_alpha), *ulps, float(neg_alpha) / 2, -1.0, 1.0, 1e-3, -math.inf, math.inf,
            math.nan, negative_nan]


def sample(dtype: torch.dtype, layout: str, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4-d x holding every edge value among random ones, in ``layout``, and a gradient holding inf and NaN."""
    torch.manual_seed(0)
    base = torch.randn(2, 6, 4, 8, dtype=torch.float64) * 0.1
    edges = torch.tensor(edge_values(dtype, alpha), dtype=torch.float64)
    base.view(-1)[: edges.numel()] = edges
    base.view(-1)[96 : 96 + edges.numel()] = edges  # again where the sliced layout keeps them
    base = base.to(dtype)
    x = {
        "contiguous": base,
        "transposed": base.transpose(1, 3),
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "sliced": base[:, 1:, :, ::1][:, :, ::1, 1:],
    }[layout]
    grad = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    grad.view(-1)[:4] = torch.tensor([math.inf, -math.inf, math.nan, 2.0], dtype=dtype)
    grad = torch.roll(grad, shifts=3, dims=-1)  # puts the special gradients over several kinds of x
    return x, grad


def run_eager(module, x, grad):
    leaf = x.detach().clone().requires_grad_(True)
    y = module(leaf)
    y.backward(grad)
    return y, leaf.grad


def with_kernel(name, run):
    def run_with(module, x, grad):
        with use_kernel(name):
            return run(module, x, grad)
    return run_with


def run_double_backward(module, x, grad):
    leaf = x.detach().clone().requires_grad_(True)
    weight = grad.detach().clone().requires_grad_(True)
    y = module(leaf)
    (g,) = torch.autograd.grad(y, leaf, weight, create_graph=True)
    (mask,) = torch.autograd.grad(g, weight, torch.ones_like(g))  # d/dweight of the masked gradient: the mask
    assert_same(mask, reference(x, torch.ones_like(grad), float(module.alpha))[1])
    return y, g


def run_checkpoint(use_reentrant):
    def run(module, x, grad):
        leaf = x.detach().clone().requires_grad_(True)
        y = checkpoint(module, leaf, use_reentrant=use_reentrant)
        y.backward(grad)
        return y, leaf.grad
    return run


def run_compile(module, x, grad):
    torch._dynamo.reset()
    return run_eager(torch.compile(module, backend="aot_eager", fullgraph=True), x, grad)


def run_export(module, x, grad):
    program = torch.export.export(module, (x.detach().clone().requires_grad_(True),))
    return run_eager(program.module(), x, grad)


def run_vmap(module, x, grad):
    leaf = x.detach().clone().requires_grad_(True)
    y = torch.vmap(module)(leaf)
    y.backward(grad)
    return y, leaf.grad


def run_func_grad(module, x, grad):
    return module(x.detach()), torch.func.grad(lambda t: (module(t) * grad).sum())(x)


def run_vjp(module, x, grad):
    y, vjp = torch.func.vjp(module, x)
    return y, vjp(grad)[0]


def run_vmap_vjp(module, x, grad):
    def per_row(row, row_grad):
        return torch.func.vjp(module, row)[1](row_grad)[0]
    return module(x.detach()), torch.vmap(per_row)(x, grad)


def run_jvp(module, x, grad):
    return torch.func.jvp(module, (x,), (grad,))


def run_forward_ad(module, x, grad):
    with forward_ad.dual_level():
        out = forward_ad.unpack_dual(module(forward_ad.make_dual(x, grad)))
    return out.primal, out.tangent


MODES = {
    "eager": run_eager,
    "tensor_kernel": with_kernel("tensor", run_eager),
    "double_backward": run_double_backward,
    "checkpoint": run_checkpoint(False),
    "checkpoint_reentrant": run_checkpoint(True),
    "compile": run_compile,
    "export": run_export,
    "vmap": run_vmap,
    "func_grad": run_func_grad,
    "vjp": run_vjp,
    "vmap_vjp": run_vmap_vjp,
    "jvp": run_jvp,
    "forward_ad": run_forward_ad,
    "triton_kernel": with_kernel("triton", run_eager),
    "triton_double_backward": with_kernel("triton", run_double_backward),
    "triton_checkpoint": with_kernel("triton", run_checkpoint(False)),
    "triton_compile": with_kernel("triton", run_compile),
    "triton_export": with_kernel("triton", run_export),
}


def assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("memory", MEMORY)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_dtype_and_layout_matches_the_float64_reference(mode, dtype, layout, memory, device):
    skip_triton_on_cpu_without_interpreter(mode, device)
    x, grad = (t.to(device) for t in sample(dtype, layout, 0.05))
    if mode == "func_grad":  # the gradient of a sum of products: inf/NaN in grad would make NaN products
        grad = torch.nan_to_num(grad, nan=1.0, posinf=3.0, neginf=-3.0)
    y, g = MODES[mode](HeLU(0.05, memory=memory).to(device), x, grad)
    want_y, want_g = reference(x, grad, 0.05)
    assert_same(y.detach(), want_y)
    assert_same(g.detach(), want_g)


@pytest.mark.parametrize("memory", MEMORY)
@pytest.mark.parametrize("mode", ["eager", "tensor_kernel", "double_backward", "compile", "export", "vjp", "jvp",
                                  "triton_kernel", "triton_double_backward"])
def test_alpha_rounding_to_zero_in_half_gives_relu_gradient_in_every_mode(mode, memory):
    skip_triton_on_cpu_without_interpreter(mode)
    x = torch.tensor([-1e-3, -0.0, 0.0, 1e-3, -1e-9], dtype=torch.float16)
    grad = torch.tensor([1.0, 2.0, 3.0, 4.0, math.inf], dtype=torch.float16)
    y, g = MODES[mode](HeLU(1e-9, memory=memory), x, grad)
    assert g.tolist() == [0.0, 0.0, 0.0, 4.0, 0.0]  # ReLU's: 0 at +-0, since alpha is 0 in float16
    assert_same(g.detach(), reference(x, grad, 1e-9)[1])


def test_float_alpha_reaches_float64_inputs_unrounded():
    x = torch.tensor([-0.05, -0.049999999999], dtype=torch.float64, requires_grad=True)
    helu(x, 0.05).backward(torch.ones(2, dtype=torch.float64))
    assert x.grad.tolist() == [0.0, 1.0]  # via float32, -0.05 would be just inside the band


@pytest.mark.parametrize("memory", MEMORY)
def test_opcheck_passes_for_every_dtype_and_layout(memory):
    for dtype in DTYPES:
        for layout in LAYOUTS:
            x, _ = sample(dtype, layout, 0.05)
            x = x.nan_to_num(nan=-1.0)  # opcheck compares outputs without equal_nan
            args = (x.detach().clone().requires_grad_(True), torch.tensor(0.05, dtype=torch.float64),
                    memory == "input")
            torch.library.opcheck(_helu_op, args)
            if memory == "input":
                grad = torch.randn(x.shape, dtype=dtype).requires_grad_(True)
                torch.library.opcheck(_input_backward_op, (grad, x, torch.tensor(0.05, dtype=torch.float64)))


def test_export_training_graph_keeps_the_op_and_helu_gradient_after_decompositions():
    program = torch.export.export(HeLU(0.05), (torch.randn(3, requires_grad=True),)).run_decompositions()
    assert "helu_lightning.helu" in str(program.graph)
    x = torch.tensor([-0.1, -0.03, 0.2], requires_grad=True)
    program.module()(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0]


def test_vmap_with_one_alpha_per_sample():
    x = torch.tensor([[-0.03, -0.3], [-0.03, -0.3]])
    alphas = torch.tensor([0.05, 0.5], dtype=torch.float64)
    grads = torch.vmap(lambda xi, ai: torch.func.grad(lambda t: helu(t, ai).sum())(xi))(x, alphas)
    assert grads.tolist() == [[1.0, 0.0], [1.0, 1.0]]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=40),
    alpha=st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False),
    dtype=st.sampled_from(DTYPES),
    memory=st.sampled_from(MEMORY),
    kernel=st.sampled_from(["auto", "tensor", "triton"] if TRITON_ON_CPU else ["auto", "tensor"]),
)
def test_property_any_values_any_alpha_match_the_reference(values, alpha, dtype, memory, kernel):
    x = torch.tensor(values, dtype=torch.float64).to(dtype)
    neighbours = torch.tensor([-rounded_alpha(alpha, dtype)], dtype=dtype)
    x = torch.cat([x, neighbours, (neighbours.view(INT_VIEW[dtype]) + 1).view(dtype)])
    grad = torch.linspace(1, 2, x.numel(), dtype=torch.float64).to(dtype)
    with use_kernel(kernel):
        y, g = run_eager(HeLU(alpha, memory=memory), x, grad)
    want_y, want_g = reference(x, grad, alpha)
    assert_same(y.detach(), want_y)
    assert_same(g, want_g)


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.05, 1e-9])
@pytest.mark.parametrize("dtype", DTYPES)
def test_inductor_matches_the_reference_at_edge_values(dtype, alpha):
    x, grad = sample(dtype, "contiguous", alpha)
    torch._dynamo.reset()
    no_caches = (torch._inductor.config.patch(fx_graph_cache=False),
                 torch._functorch.config.patch(enable_autograd_cache=False))  # caches miss op changes
    with no_caches[0], no_caches[1]:
        compiled_matches_reference(x, grad, alpha)
    torch._dynamo.reset()


def compiled_matches_reference(x: torch.Tensor, grad: torch.Tensor, alpha: float) -> None:
    for memory in MEMORY:
        compiled = torch.compile(HeLU(alpha, memory=memory), fullgraph=True, dynamic=False)
        y, g = run_eager(compiled, x, grad)
        want_y, want_g = reference(x, grad, alpha)
        assert_same(y.detach(), want_y)
        assert_same(g, want_g)
