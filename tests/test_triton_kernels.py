"""HeLU's accelerator path: one full-size kernel each way (Triton), any dense layout without a copy, other
layouts on the tensor kernels, and the eager twin of the custom op chosen only where nothing traces.
Without CUDA the Triton kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1)."""

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from helu_lightning import HeLU, helu, triton_kernels, use_kernel
from helu_lightning.errors import UserError
from helu_lightning.kernels import KERNELS, kernel_for

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ALLOCATIONS = {"empty_like", "empty_strided", "empty", "view", "detach", "_to_copy", "neg", "alias", "lift_fresh"}


class CountFullSize(TorchDispatchMode):
    """Names the aten ops that touch a tensor of ``numel`` elements, allocations apart (those move no data)."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.ops = numel, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if name not in ALLOCATIONS and any(t.numel() == self.numel for t in tensors):
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def launches(monkeypatch):
    """Counts launches of each Triton kernel by name. A launch runs outside dispatch modes: the interpreter's
    own copies between host and "device" are not the kernel's traffic."""
    counts = collections.Counter()
    for name in ("_forward_kernel", "_backward_kernel", "_input_backward_kernel"):
        kernel = getattr(triton_kernels, name)

        class Counted:
            def __getitem__(self, grid, kernel=kernel, name=name):
                def launch(*args, **kwargs):
                    counts[name] += 1
                    with _disable_current_modes():
                        return kernel[grid](*args, **kwargs)
                return launch

        monkeypatch.setattr(triton_kernels, name, Counted())
    return counts


def layouts(numel_shape=(2, 3, 4, 5)):
    base = torch.randn(numel_shape, device=DEVICE)
    return {
        "contiguous": base,
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "transposed": base.transpose(1, 3),
        "sliced": base[:, :, ::2],
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kernels", ["triton", "tensor"])
def test_full_size_kernels_per_direction(kernels, dtype, launches):
    """The accelerator path: Triton runs one full-size kernel each way where the tensor set runs three and three."""
    x = torch.randn(4, 8, 16, device=DEVICE, dtype=dtype)
    alpha = torch.tensor(0.05, dtype=torch.float64, device=DEVICE)
    counter = CountFullSize(x.numel())
    with counter:
        y = KERNELS[kernels].forward(x, alpha)
    forward = counter.ops + [name for name in launches.elements()]
    grad = torch.ones_like(x)
    counter.ops, before = [], sum(launches.values())
    with counter:
        KERNELS[kernels].backward(grad, y)
    backward = counter.ops + ["triton"] * (sum(launches.values()) - before)
    if kernels == "triton":
        assert (forward, backward) == (["_forward_kernel"], ["triton"])
    else:
        assert (forward, backward) == (["le", "threshold", "where"], ["reciprocal", "lt", "where"])


@pytest.mark.parametrize("memory", ["output", "input"])
def test_training_step_runs_one_triton_kernel_each_way_and_nothing_else_full_size(memory, launches, monkeypatch):
    """Forced Triton, a HeLU forward+backward: the Triton kernels once each, no tensor or bits kernel."""
    for name in ("bits", "tensor"):
        monkeypatch.setitem(KERNELS, name, None)  # any use of another set fails
    x = torch.randn(3, 4, 5, 6, device=DEVICE).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    with use_kernel("triton"):
        y = HeLU(memory=memory).to(DEVICE)(x)
        assert sum(launches.values()) == (memory == "output")
        y.backward(torch.randn_like(y))
    backward = "_backward_kernel" if memory == "output" else "_input_backward_kernel"
    assert launches == collections.Counter({backward: 1, **({"_forward_kernel": 1} if memory == "output" else {})})
    assert y.stride() == x.stride() and x.grad.stride() == x.stride()


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed", "sliced"])
def test_dense_layouts_run_in_place_of_their_storage_order_and_others_fall_back(layout, launches):
    """Dense layouts: one launch, output strides equal to the input's, no copy op; a slice with gaps: the tensor
    kernels (any strides, no copy), with the same bits."""
    x = layouts()[layout]
    alpha = torch.tensor(0.05, dtype=torch.float64)
    counter = CountFullSize(x.numel())
    with counter:
        y = triton_kernels.forward_triton(x, alpha)
    assert not {"clone", "contiguous", "copy_", "_to_copy"} & set(counter.ops)
    assert launches["_forward_kernel"] == (layout != "sliced")
    assert y.stride() == x.stride() if layout != "sliced" else y.shape == x.shape
    assert torch.equal(y.view(torch.int32), KERNELS["tensor"].forward(x, alpha).view(torch.int32))


def test_backward_with_gradient_strides_unlike_the_output_falls_back_with_the_same_bits(launches):
    x = torch.randn(2, 3, 4, 5, device=DEVICE).contiguous(memory_format=torch.channels_last) - 0.03
    y = triton_kernels.forward_triton(x, torch.tensor(0.05, dtype=torch.float64))
    grad = torch.randn(x.shape, device=DEVICE)  # contiguous, y channels_last: one flat pass would pair them wrongly
    out = triton_kernels.backward_triton(grad, y)
    assert launches["_backward_kernel"] == 0
    assert torch.equal(out, KERNELS["tensor"].backward(grad, y))
    assert torch.equal(triton_kernels.input_backward_triton(grad, x, torch.tensor(0.05)),
                       KERNELS["tensor"].input_backward(grad, x, torch.tensor(0.05)))


def test_float64_and_empty_tensors():
    with use_kernel("triton"):
        assert kernel_for(torch.zeros(2, dtype=torch.float64)) == "tensor"
        assert kernel_for(torch.zeros(2)) == "triton"
        assert kernel_for(torch.zeros(2), differentiable=True) == "tensor"  # double backward needs select ops
    empty = torch.zeros(0, 3, device=DEVICE)
    assert triton_kernels.forward_triton(empty, torch.tensor(0.05)).shape == (0, 3)
    assert triton_kernels.backward_triton(empty, empty).shape == (0, 3)


def test_auto_picks_triton_only_for_eager_cuda():
    assert kernel_for(torch.zeros(2)) == "bits"
    if torch.cuda.is_available():
        assert kernel_for(torch.zeros(2, device="cuda")) == "triton"
        assert kernel_for(torch.zeros(2, device="cuda", dtype=torch.float64)) == "tensor"


def test_plain_eager_skips_the_custom_op_and_tracing_keeps_it():
    """Plain eager autograd runs the lean autograd.Function; a dispatch mode (as fake tensors and export use)
    and torch.compile see the custom op."""
    x = torch.randn(5, requires_grad=True)
    assert type(HeLU()(x).grad_fn).__name__ == "_HeLUEagerBackward"
    assert type(HeLU(memory="input")(x).grad_fn).__name__ == "_HeLUEagerBackward"

    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    with Record():
        HeLU()(x)
    assert "helu_lightning.helu.default" in seen
    program = torch.export.export(HeLU(), (torch.randn(3, requires_grad=True),))
    assert "helu_lightning.helu" in str(program.graph)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_check_script_parses_and_refuses_a_machine_without_a_gpu(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    env = {**os.environ, "GPU_CHECK_OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no CUDA GPU is visible to torch" in done.stderr
    assert not any((tmp_path / "out").iterdir())  # refused before any step ran


def test_forced_triton_on_cpu_tensors_outside_the_interpreter_falls_back_to_the_tensor_kernels(monkeypatch):
    monkeypatch.setattr(triton_kernels, "_INTERPRETED", False)
    x = torch.linspace(-1, 1, 41, requires_grad=True)
    for memory in ("output", "input"):
        with use_kernel("tensor"):
            want_y = HeLU(0.3, memory=memory)(x)
            (want,) = torch.autograd.grad(want_y.sum(), x)
        with use_kernel("triton"):
            y = HeLU(0.3, memory=memory)(x)
            (grad,) = torch.autograd.grad(y.sum(), x)
        assert torch.equal(y.view(torch.int32), want_y.view(torch.int32)) and torch.equal(grad, want)
    with pytest.raises(UserError, match="TRITON_INTERPRET=1"):  # called directly, it says why it cannot run
        triton_kernels._launch(None, x.detach())


WHERE_TRITON_CANNOT_RUN = r"""
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from helu_lightning import HeLU, set_kernel
set_kernel("triton")
for memory in ("output", "input"):
    with torch.device("meta"):  # a large model built on meta for initialisation
        model = torch.nn.Sequential(torch.nn.Linear(6, 6), HeLU(0.1, memory=memory), torch.nn.Linear(6, 2))
        out = model(torch.randn(3, 6))
    out.sum().backward()
    assert out.device.type == "meta" and model[0].weight.grad.shape == (6, 6)
    with FakeTensorMode():
        fake = torch.randn(2, 5, requires_grad=True)
        HeLU(0.1, memory=memory)(fake).sum().backward()
        assert fake.grad.shape == (2, 5)
    x = torch.linspace(-1, 1, 21, requires_grad=True)
    y = HeLU(0.2, memory=memory)(x)
    y.sum().backward()
    assert (x.grad == (x > -0.2).float()).all() and (y.detach() == x.detach().clamp(min=0)).all()
print("fell back")
"""


def test_forced_triton_falls_back_on_meta_fake_and_uninterpreted_cpu_tensors_in_a_fresh_process() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", WHERE_TRITON_CANNOT_RUN], capture_output=True, text=True, env=env,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and "fell back" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("kernel", ["auto", "triton", "tensor"])
@pytest.mark.parametrize("memory", ["output", "input"])
def test_backward_uses_the_alpha_of_the_forward_and_functional_alphas_work(kernel, memory):
    """set_alpha between forward and backward cannot reach the backward; float and tensor alphas of helu()."""
    x = torch.tensor([-0.3, -0.1, -0.03, 0.2], device=DEVICE, requires_grad=True)
    module = HeLU(0.05, memory=memory).to(DEVICE)
    with use_kernel(kernel):
        y = module(x)
        module.set_alpha(0.5)
        y.backward(torch.ones_like(y))
        assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0]
        for alpha in (0.2, torch.tensor(0.2, dtype=torch.float64, device=DEVICE)):
            (grad,) = torch.autograd.grad(helu(x, alpha, memory=memory).sum(), x)
            assert grad.tolist() == [0.0, 1.0, 1.0, 1.0]


COMPILE_FOR_HOPPER = """
import inspect
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from helu_lightning import triton_kernels as tk
for dtype, ints, neg_zero in (("fp32", "i32", -2**31), ("bf16", "i16", -2**15), ("fp16", "i16", -2**15)):
    for fn, signature, constants in (
        (tk._forward_kernel, {"x_ptr": "*" + dtype, "y_bits_ptr": "*" + ints, "alpha_ptr": "*" + dtype, "n": "i64",
                              "NEG_ZERO": "constexpr", "BLOCK": "constexpr"}, {"NEG_ZERO": neg_zero, "BLOCK": 1024}),
        (tk._backward_kernel, {"grad_bits_ptr": "*" + ints, "y_bits_ptr": "*" + ints, "out_bits_ptr": "*" + ints,
                               "n": "i32", "NEG_ZERO": "constexpr", "BLOCK": "constexpr"},
         {"NEG_ZERO": neg_zero, "BLOCK": 1024}),
        (tk._input_backward_kernel, {"grad_bits_ptr": "*" + ints, "x_ptr": "*" + dtype, "alpha_ptr": "*" + dtype,
                                     "out_bits_ptr": "*" + ints, "n": "i32", "BLOCK": "constexpr"}, {"BLOCK": 1024}),
    ):
        keyword = "constexprs" if "constexprs" in inspect.signature(ASTSource).parameters else "constants"
        kernel = triton.compile(ASTSource(fn=fn, signature=signature, **{keyword: constants}),
                                target=GPUTarget("cuda", 90, 32))
        assert kernel.asm["cubin"] and "ld.global" in kernel.asm["ptx"], (fn.__name__, dtype)
print("compiled 9")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the kernels are compiled and run for real")
def test_kernels_compile_to_hopper_machine_code_without_a_gpu():
    """The interpreter skips Triton's compiler; this runs it (its bundled ptxas, sm_90) for every dtype."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", COMPILE_FOR_HOPPER], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0 and "compiled 9" in done.stdout, done.stderr[-3000:]
