"""Step-time overhead of ActivationMonitor on a small CNN, ReLU and HeLU, measured two ways in one process:

1. paired, in one run: the monitor measures every other step (window 1); the median time of measured steps over
   the median of plain steps gives the cost of one measured step, and the overhead at every_n_steps N, window W
   is that cost times W / N. Load on the machine hits both kinds of step alike, so this is the stable number.
2. A/B: whole runs without the monitor and with it at N, W, back to back; the median over pairs of the ratio of
   mean step times. Only this column sees load that changes between runs: trust it on an idle machine.

A step's time runs from one training batch start to the next (forward, backward, optimizer, all callbacks).

    python benchmarks/monitor_overhead.py
    python benchmarks/monitor_overhead.py --backbone resnet18_cifar --image_size 32 --steps 100
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from helu_lightning.callbacks import ActivationMonitor
from helu_lightning.tasks.vision import VisionClassifier


class _StepTimer(pl.Callback):
    """Seconds between consecutive training batch starts, and whether the monitor measured that step."""

    def __init__(self, monitor: ActivationMonitor | None, skip: int = 5) -> None:
        self.monitor, self.skip = monitor, skip
        self.steps: list[tuple[float, bool]] = []
        self._t0: float | None = None
        self._measured = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self._t0 is not None and trainer.global_step > self.skip:
            self.steps.append((now - self._t0, self._measured))
        self._t0 = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Runs before the monitor's own batch-end hook, while its hooks are still attached on measured steps.
        self._measured = self.monitor is not None and self.monitor.measuring


def _run(args: argparse.Namespace, activation: str, monitor: ActivationMonitor | None, steps: int) -> _StepTimer:
    pl.seed_everything(0, verbose=False)
    n = args.batch_size * 16
    data = TensorDataset(torch.randn(n, 3, args.image_size, args.image_size), torch.randint(0, 10, (n,)))
    spec = {"name": "helu", "alpha": 0.05} if activation == "helu" else activation
    model = VisionClassifier(args.backbone, 10, in_channels=3, image_size=args.image_size, activation=spec)
    timer = _StepTimer(monitor)
    trainer = pl.Trainer(accelerator=args.accelerator, devices=1, max_steps=steps + 6, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer] + ([monitor] if monitor else []))
    trainer.fit(model, DataLoader(data, batch_size=args.batch_size, shuffle=True))
    return timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--image_size", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run (after 6 warm-up steps)")
    parser.add_argument("--repeats", type=int, default=3, help="A/B pairs of runs per activation")
    parser.add_argument("--every_n_steps", type=int, default=50)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is steadiest on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, w = args.every_n_steps, args.window
    print(f"# {args.backbone} {args.image_size}x{args.image_size} batch {args.batch_size}, {args.steps} steps/run, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.accelerator}")
    print(f"{'activation':<10} {'plain ms':>9} {'measured ms':>12} {'measured/plain':>15} "
          f"{f'paired: every {n}, window {w}':>28} {f'A/B: every {n}, window {w}':>25}")
    for activation in ("relu", "helu"):
        paired = _run(args, activation, ActivationMonitor(2, 1, on_validation=False), args.steps)
        plain = statistics.median(t for t, measured in paired.steps if not measured)
        measured = statistics.median(t for t, measured in paired.steps if measured)
        cost = measured / plain - 1
        ratios = []
        for _ in range(args.repeats):
            off = statistics.mean(t for t, _ in _run(args, activation, None, args.steps).steps)
            monitor = ActivationMonitor(n, w, on_validation=False)
            ratios.append(statistics.mean(t for t, _ in _run(args, activation, monitor, args.steps).steps) / off)
        ratio = statistics.median(ratios)
        print(f"{activation:<10} {plain * 1e3:>9.2f} {measured * 1e3:>12.2f} {measured / plain:>15.3f} "
              f"{f'{1 + cost * w / n:.4f}x':>28} {f'{ratio:.3f}x':>25}")


if __name__ == "__main__":
    main()
