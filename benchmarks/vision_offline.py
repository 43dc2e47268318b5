"""ReLU vs GELU vs HeLU on the offline digits set: test accuracy over seeds, seconds per epoch, and HeLU's
training-step time as a ratio to ReLU's, measured side by side: the four models take turns, step by step.

    python benchmarks/vision_offline.py                 # 4 activations x 3 seeds x 20 epochs, ~3 min on 2 cores
    python benchmarks/vision_offline.py --seeds 5 --epochs 30 --threads 2

Same model and recipe as configs/offline.yaml (small CNN, SGD lr 0.05 momentum 0.9, cosine), in a plain loop so
the step time is the model's, not the framework's. Seconds per epoch count training steps only (no data loading).
Test accuracy is taken after the last epoch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from helu_lightning.data.digits import DigitsDataModule
from helu_lightning.tasks.vision import VisionClassifier

ACTIVATIONS = {
    "relu": "relu",
    "gelu": "gelu",
    "helu a=0.05": {"name": "helu", "alpha": 0.05},
    "helu a=0.001": {"name": "helu", "alpha": 0.001},
}


def run_seed(seed: int, epochs: int, batch_size: int) -> dict[str, dict[str, float]]:
    """Train one model per activation on the same batches, stepping them in turn so that all share the machine's
    load alike; return each one's test accuracy, seconds per epoch and median training-step time."""
    data = DigitsDataModule(seed=seed, batch_size=batch_size)
    data.setup("fit")
    models, optimizers, schedulers = {}, {}, {}
    for name, activation in ACTIVATIONS.items():
        torch.manual_seed(seed)
        models[name] = VisionClassifier("small_cnn", num_classes=10, in_channels=1, image_size=8,
                                        backbone_options={"width": 32, "dropout": 0.1}, activation=activation).model
        optimizers[name] = torch.optim.SGD(models[name].parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        schedulers[name] = torch.optim.lr_scheduler.CosineAnnealingLR(optimizers[name], T_max=epochs)
    steps: dict[str, list[float]] = {name: [] for name in models}
    torch.manual_seed(seed)
    for _ in range(epochs):
        for model in models.values():
            model.train()
        for x, y in data.train_dataloader():
            for name, model in models.items():
                start = time.perf_counter()
                loss = F.cross_entropy(model(x), y)
                optimizers[name].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[name].step()
                steps[name].append(time.perf_counter() - start)
        for scheduler in schedulers.values():
            scheduler.step()
    results = {}
    for name, model in models.items():
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in data.test_dataloader():
                correct += (model(x).argmax(1) == y).sum().item()
                total += len(y)
        results[name] = {"acc": correct / total, "epoch_s": sum(steps[name]) / epochs,
                         "step_s": statistics.median(steps[name])}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per activation (default 3)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadiest timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ACTIVATIONS}
    for seed in range(args.seeds):
        for name, result in run_seed(seed, args.epochs, args.batch_size).items():
            results[name].append(result)
    relu_step = statistics.mean(r["step_s"] for r in results["relu"])
    print(f"digits 8x8, small CNN, {args.epochs} epochs, batch {args.batch_size}, {args.seeds} seeds, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(f"{'activation':<14} {'test acc (mean +- std)':>24} {'s/epoch':>8} {'ms/step':>8} {'step vs ReLU':>13}")
    for name, runs in results.items():
        accs = [r["acc"] for r in runs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        step = statistics.mean(r["step_s"] for r in runs)
        epoch = statistics.mean(r["epoch_s"] for r in runs)
        print(f"{name:<14} {statistics.mean(accs):>15.4f} +- {std:.4f} {epoch:>8.3f} {1000 * step:>8.2f} "
              f"{step / relu_step:>12.2f}x")


if __name__ == "__main__":
    main()
