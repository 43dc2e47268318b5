"""HeLU vs ReLU, GELU and the naive HeLU: forward+backward time and saved-for-backward memory.

    python benchmarks/activation.py                      # CPU, 1 thread and all threads; CUDA when present
    python benchmarks/activation.py --threads 1 --clock cpu     # a machine shared with other jobs
    python benchmarks/activation.py --device cuda --dtypes float32 bfloat16 float16 --channels-last --compile

Time: each activation runs forward+backward (``torch.autograd.grad``) on one tensor of each ``--numel``
(default 2k, 16k, 262k and 4M elements: per-call overhead first, memory traffic last); the activations take
turns inside every repeat, and each repeat's time is divided by ReLU's from the same repeat, so machine load
hits all of them alike. ``relu_function`` is ReLU's own kernels behind a Python ``autograd.Function``: the
floor for any activation written in Python. Printed: median us per call, the median ratio to ReLU and its
25th-75th percentile spread. ``--channels-last`` times a 4-d (N, 64, H, W) channels_last tensor instead of a
flat one; ``--compile`` adds ``torch.compile``d ReLU and HeLU rows. ``--clock cpu`` times CPU rows by process
CPU time instead of wall time, which other jobs on a busy machine disturb less (best with ``--threads 1``). On
Linux the glibc allocator is told to keep freed memory (``mallopt``) so that page faults of fresh 16 MiB
buffers, whose count depends on glibc's heap-trimming heuristics rather than on the kernels, do not swamp the
comparison; ``--system-malloc`` skips it.

Memory: the bytes saved for backward (each storage once, via ``torch.autograd.graph.saved_tensors_hooks``) by
one training step of a CIFAR ResNet-18 (torchvision resnet18, 100 classes, 3x3 stem, no max-pool) at batch 128
on 32x32 inputs. Goals (issues 3 and 20: at most 1.5x ReLU at 16k elements, 1.10x at 4M; memory 1.02x) are
printed beside HeLU's rows with whether this run met them.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import resnet18

from helu_lightning.activations import HeLU, NaiveHeLU
from helu_lightning.surgery import replace_activations

TIME_GOALS = {16384: 1.5, 4194304: 1.10}  # elements -> most HeLU/ReLU forward+backward time
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SIZES = [2048, 16384, 262144, 4194304]
MEMORY_GOAL = 1.02


class _ReLUFunction(torch.autograd.Function):
    """ReLU's own two kernels behind a Python ``autograd.Function``: the floor for any Python-level activation."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward.default(grad, y, 0.0)


class ReLUFunction(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ReLUFunction.apply(x)


def _activations(compile_helu: bool) -> dict[str, Callable[[], nn.Module]]:
    makers: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "relu_function": ReLUFunction,
        "helu": HeLU,
        "helu_input": lambda: HeLU(memory="input"),
        "gelu": nn.GELU,
        "helu_naive": NaiveHeLU,
    }
    if compile_helu:  # compiled ReLU too: Inductor's own speed on this machine is the fair baseline
        makers["relu_compiled"] = lambda: torch.compile(nn.ReLU(), dynamic=False)
        makers["helu_compiled"] = lambda: torch.compile(HeLU(), dynamic=False)
    return makers


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _sample(numel: int, device: str, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    if not channels_last:
        return torch.randn(numel, device=device, dtype=dtype)
    side = 4 if numel < 16384 else 16  # (N, 64, side, side) holds each default size exactly
    batch = max(1, numel // (64 * side * side))
    return torch.randn(batch, 64, side, side, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)


def _inner(numel: int, requested: int | None) -> int:
    """Calls per timed block: about 20M elements' worth, so small sizes are not timer noise."""
    return requested or max(3, min(2000, 20_000_000 // numel))


def time_activations(device: str, dtype: torch.dtype, numel: int, args: argparse.Namespace) -> list[tuple]:
    """Interleaved fwd+bwd timing; returns (name, median us, median ratio, p25 ratio, p75 ratio) rows."""
    torch.manual_seed(0)
    x = _sample(numel, device, dtype, args.channels_last).requires_grad_(True)
    grad = torch.randn_like(x)
    inner = _inner(numel, args.inner)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    clock = time.process_time if device == "cpu" and args.clock == "cpu" else time.perf_counter
    steps: dict[str, Callable[[], object]] = {}
    for name, make in _activations(args.compile).items():
        module = make().to(device)
        steps[name] = lambda m=module: torch.autograd.grad(m(x), x, grad)
        started = time.perf_counter()
        for _ in range(3):
            steps[name]()
        sync()
        if name.endswith("_compiled"):
            print(f"  ({device} {_dtype_name(dtype)} {numel}: torch.compile of {name} took "
                  f"{time.perf_counter() - started:.1f} s)")
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            sync()
            started = clock()
            for _ in range(inner):
                step()
            sync()
            times[name].append((clock() - started) / inner * 1e6)
    rows = []
    for name, values in times.items():
        ratios = [t / r for t, r in zip(values, times["relu"])]
        rows.append((name, statistics.median(values), statistics.median(ratios), _percentile(ratios, 0.25),
                     _percentile(ratios, 0.75)))
    return rows


def cifar_resnet18() -> nn.Module:
    """torchvision resnet18 with the usual CIFAR stem: 3x3 stride-1 first conv, no max-pool, 100 classes."""
    model = resnet18(weights=None, num_classes=100)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


def saved_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes that one training step's forward keeps for backward, counting each storage once."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = nn.functional.cross_entropy(model(x), y)
    del loss
    return sum(storages.values())


def memory_rows(batch: int) -> list[tuple[str, float, float]]:
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 100, (batch,))
    result = {}
    for name, make in _activations(compile_helu=False).items():
        if name == "relu_function":
            continue
        model = cifar_resnet18().train()
        replace_activations(model, make, targets=(nn.ReLU,))
        result[name] = saved_bytes(model, x, y) / 2**20
    return [(name, mib, mib / result["relu"]) for name, mib in result.items()]


def keep_freed_memory() -> bool:
    """Ask glibc to serve every size from the heap and never trim it (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 2**30) and libc.mallopt(m_trim_threshold, 2**31 - 1))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _verdict(value: float, goal: float) -> str:
    return f"goal <= {goal:.2f}x: {'met' if value <= goal else 'NOT met'}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--numel", type=int, nargs="+", default=SIZES, help="elements per timed tensor")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=11, help="interleaved rounds (median and spread over them)")
    parser.add_argument("--inner", type=int, default=None, help="fwd+bwd calls per timed block (default: by size)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1],
                        help="CPU thread counts to time (torch.set_num_threads); CUDA rows use the first")
    parser.add_argument("--device", choices=["cpu", "cuda"], nargs="+", default=None,
                        help="devices (default: cpu, and cuda when present)")
    parser.add_argument("--channels-last", action="store_true", help="time 4-d channels_last tensors")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="CPU rows: wall time, or process CPU time (steadier on a shared machine)")
    parser.add_argument("--batch", type=int, default=128, help="ResNet-18 batch for the memory measurement")
    parser.add_argument("--compile", action="store_true", help="add torch.compile(ReLU) and (HeLU) rows")
    parser.add_argument("--no-memory", action="store_true", help="skip the ResNet-18 memory measurement")
    parser.add_argument("--system-malloc", action="store_true", help="leave glibc's allocator settings alone")
    args = parser.parse_args(argv)
    allocator = "glibc default" if args.system_malloc or not keep_freed_memory() else "glibc, freed memory kept"
    devices = args.device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}, {args.clock} clock, allocator "
          f"{allocator}), {args.repeats} repeats, devices: {', '.join(devices)}, "
          f"{'4-d channels_last' if args.channels_last else 'flat'} tensors")
    print("\nforward+backward time per call, ratio to ReLU in the same repeat (median [p25-p75])")
    print(f"{'device':6} {'thr':>3} {'dtype':8} {'numel':>8} {'activation':14} {'us':>9} {'x ReLU':>7} {'spread':>13}")
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
        print(f"  ({device}: {name})")
        for threads in args.threads if device == "cpu" else args.threads[:1]:
            torch.set_num_threads(threads)
            for dtype_name in args.dtypes:
                for numel in args.numel:
                    rows = time_activations(device, DTYPES[dtype_name], numel, args)
                    for act, us, ratio, low, high in rows:
                        goal = TIME_GOALS.get(numel) if act == "helu" else None
                        verdict = f"   {_verdict(ratio, goal)}" if goal else ""
                        print(f"{device:6} {threads:3} {dtype_name:8} {numel:8} {act:14} {us:9.1f} {ratio:6.2f}x "
                              f"[{low:4.2f}-{high:4.2f}]{verdict}", flush=True)
    if not args.no_memory:
        print(f"\nsaved-for-backward memory, one CIFAR ResNet-18 training step (batch {args.batch}, 32x32)")
        print(f"{'activation':14} {'MiB':>8} {'x ReLU':>7}")
        for act, mib, ratio in memory_rows(args.batch):
            goal = f"   {_verdict(ratio, MEMORY_GOAL)}" if act == "helu" else ""
            print(f"{act:14} {mib:8.1f} {ratio:6.2f}x{goal}")


if __name__ == "__main__":
    main()
