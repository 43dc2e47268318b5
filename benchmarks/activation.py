"""HeLU vs ReLU, GELU and the naive HeLU: forward+backward time and saved-for-backward memory.

    python benchmarks/activation.py                      # CPU (2 threads) and CUDA when present
    python benchmarks/activation.py --threads 1 --clock cpu     # a machine shared with other jobs

Time: each activation runs forward+backward (``torch.autograd.grad``) on one tensor of ``--numel`` elements;
the activations take turns inside every repeat, and each repeat's time is divided by ReLU's from the same
repeat, so machine load hits all of them alike. Printed: median ms, the median ratio to ReLU and its
25th-75th percentile spread. ``--clock cpu`` times CPU rows by process CPU time instead of wall time, which
other jobs on a busy machine disturb less (best with ``--threads 1``). On Linux the glibc allocator is told to
keep freed memory (``mallopt``) so that page faults of fresh 16 MiB buffers, whose count depends on glibc's
heap-trimming heuristics rather than on the kernels, do not swamp the comparison; ``--system-malloc`` skips it.

Memory: the bytes saved for backward (each storage once, via ``torch.autograd.graph.saved_tensors_hooks``) by
one training step of a CIFAR ResNet-18 (torchvision resnet18, 100 classes, 3x3 stem, no max-pool) at batch 128
on 32x32 inputs. Goals from issue 3 are printed beside the numbers with whether this run met them.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import resnet18

from helu_lightning.activations import HeLU, NaiveHeLU
from helu_lightning.surgery import replace_activations

TIME_GOALS = {torch.float32: 1.10, torch.bfloat16: 1.5}
MEMORY_GOAL = 1.02


def _activations(compile_helu: bool) -> dict[str, Callable[[], nn.Module]]:
    makers: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
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


def time_activations(device: str, dtype: torch.dtype, args: argparse.Namespace) -> list[tuple]:
    """Interleaved fwd+bwd timing; returns (name, median ms, median ratio, p25 ratio, p75 ratio) rows."""
    torch.manual_seed(0)
    x = torch.randn(args.numel, device=device, dtype=dtype).requires_grad_(True)
    grad = torch.randn_like(x)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    clock = time.process_time if device == "cpu" and args.clock == "cpu" else time.perf_counter
    steps: dict[str, Callable[[], object]] = {}
    for name, make in _activations(not args.no_compile).items():
        module = make().to(device)
        steps[name] = lambda m=module: torch.autograd.grad(m(x), x, grad)
        started = time.perf_counter()
        for _ in range(3):
            steps[name]()
        sync()
        if name.endswith("_compiled"):
            print(f"  ({device} {_dtype_name(dtype)}: torch.compile of {name} took "
                  f"{time.perf_counter() - started:.1f} s)")
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            sync()
            started = clock()
            for _ in range(args.inner):
                step()
            sync()
            times[name].append((clock() - started) / args.inner * 1e3)
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
    parser.add_argument("--numel", type=int, default=64 * 64 * 32 * 32, help="elements per timed tensor")
    parser.add_argument("--repeats", type=int, default=11, help="interleaved rounds (median and spread over them)")
    parser.add_argument("--inner", type=int, default=5, help="fwd+bwd calls per timed block")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="CPU rows: wall time, or process CPU time (steadier on a shared machine)")
    parser.add_argument("--batch", type=int, default=128, help="ResNet-18 batch for the memory measurement")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile(HeLU) row")
    parser.add_argument("--no-memory", action="store_true", help="skip the ResNet-18 memory measurement")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even when it is present")
    parser.add_argument("--system-malloc", action="store_true", help="leave glibc's allocator settings alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    allocator = "glibc default" if args.system_malloc or not keep_freed_memory() else "glibc, freed memory kept"
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    print(f"torch {torch.__version__}, {args.threads} CPU threads ({torch.backends.cpu.get_cpu_capability()}, "
          f"{args.clock} clock, allocator {allocator}), {args.numel} elements, {args.repeats} repeats x "
          f"{args.inner} calls, devices: {', '.join(devices)}")
    print("\nforward+backward time, ratio to ReLU in the same repeat (median [p25-p75])")
    print(f"{'device':6} {'dtype':8} {'activation':14} {'ms':>8} {'x ReLU':>7} {'spread':>13}")
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
        print(f"  ({device}: {name})")
        for dtype in (torch.float32, torch.bfloat16):
            for act, ms, ratio, low, high in time_activations(device, dtype, args):
                goal = f"   {_verdict(ratio, TIME_GOALS[dtype])}" if act == "helu" else ""
                print(f"{device:6} {_dtype_name(dtype):8} {act:14} {ms:8.3f} {ratio:6.2f}x "
                      f"[{low:4.2f}-{high:4.2f}]{goal}")
    if not args.no_memory:
        print(f"\nsaved-for-backward memory, one CIFAR ResNet-18 training step (batch {args.batch}, 32x32)")
        print(f"{'activation':14} {'MiB':>8} {'x ReLU':>7}")
        for act, mib, ratio in memory_rows(args.batch):
            goal = f"   {_verdict(ratio, MEMORY_GOAL)}" if act == "helu" else ""
            print(f"{act:14} {mib:8.1f} {ratio:6.2f}x{goal}")


if __name__ == "__main__":
    main()
