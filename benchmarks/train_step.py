"""HeLU vs ReLU vs GELU in a whole training step: WRN-16-4 on CIFAR-shaped input (3x32x32, 100 classes), SGD,
bf16 autocast on CUDA (Lightning's ``bf16-mixed``), the three models stepping in turn so that load hits all alike.

    python benchmarks/train_step.py                                  # CUDA: batch 128, bf16-mixed, channels_last
    python benchmarks/train_step.py --device cpu --batch 16 --steps 5 --precision 32   # a CPU smoke run

Printed: median ms per step over ``--steps`` interleaved rounds (after ``--warmup``), and each activation's
median ratio to ReLU's step in the same round with its 25th-75th percentile spread. ``--compile`` times
``torch.compile``d models as well. Exits non-zero if HeLU's step exceeds ``--max-ratio`` x ReLU's (when given).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from helu_lightning.models import WideResNet
from helu_lightning.registry import activation_factory

ACTIVATIONS = {"relu": "relu", "helu": {"name": "helu", "alpha": 0.05}, "gelu": "gelu"}


def build(spec: object, device: str, channels_last: bool, compile_model: bool) -> tuple:
    torch.manual_seed(0)
    model = WideResNet(100, activation_factory(spec), depth=16, width=4).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    return (torch.compile(model) if compile_model else model), optimizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed interleaved rounds")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", choices=["bf16-mixed", "32"], default="bf16-mixed")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile each model")
    parser.add_argument("--max-ratio", type=float, default=None, help="fail if HeLU's step is above this x ReLU's")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch (use --device cpu)")
    channels_last = not args.no_channels_last
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    x = torch.randn(args.batch, 3, 32, 32, device=args.device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (args.batch,), device=args.device)
    models = {name: build(spec, args.device, channels_last, args.compile) for name, spec in ACTIVATIONS.items()}

    def step(name: str) -> None:
        model, optimizer = models[name]
        with autocast:
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        for name in models:
            step(name)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.steps):
        for name in models:
            sync()
            started = time.perf_counter()
            step(name)
            sync()
            times[name].append((time.perf_counter() - started) * 1e3)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"WRN-16-4, batch {args.batch}, 3x32x32, {args.precision}, {'channels_last' if channels_last else 'NCHW'}, "
          f"{'compiled' if args.compile else 'eager'}, {device_name}, torch {torch.__version__}, "
          f"{args.steps} interleaved steps")
    print(f"{'activation':10} {'ms/step':>8} {'x ReLU':>7} {'spread':>13}")
    ratio_of = {}
    for name, values in times.items():
        ratios = sorted(t / r for t, r in zip(values, times["relu"]))
        ratio_of[name] = statistics.median(ratios)
        low, high = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        print(f"{name:10} {statistics.median(values):8.2f} {ratio_of[name]:6.3f}x [{low:5.3f}-{high:5.3f}]")
    if args.max_ratio is not None and ratio_of["helu"] > args.max_ratio:
        print(f"HeLU step {ratio_of['helu']:.3f}x ReLU's: above --max-ratio {args.max_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
