"""Test-only callbacks that the DDP and fault-tolerance tests load into ``helu-train`` subprocesses.

They record what each rank saw in JSON files (``<out_dir>/<tag>-rank<r>.json``), or park the process at a known
step so the test can kill it there from outside.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from helu_lightning.activations import HeLU


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value


class PauseAtStep(Callback):
    """After optimizer step ``step``, write ``marker`` and sleep until the test kills the process."""

    def __init__(self, step: int, marker: str) -> None:
        self.step = step
        self.marker = marker

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            Path(self.marker).write_text(json.dumps({"epoch": trainer.current_epoch, "step": trainer.global_step}))
            while True:
                time.sleep(1)


class RankDump(Callback):
    """Per rank: logged metrics, every HeLU alpha per step, local validation accuracy and the norm layers' types."""

    def __init__(self, out_dir: str, tag: str = "run") -> None:
        self.out_dir = Path(out_dir)
        self.tag = tag
        self.alphas: list[list[float]] = []
        self.correct = 0
        self.seen = 0
        self.val_batches: list[list[int]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.alphas.append([m.alpha.item() for m in pl_module.modules() if isinstance(m, HeLU)])

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.correct = self.seen = 0
        self.val_batches = []

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, *args: Any) -> None:
        x, y = batch[0], batch[1]
        with torch.no_grad():
            pred = pl_module.model(x).argmax(dim=1)
        self.correct += int((pred == y).sum())
        self.seen += int(y.numel())
        self.val_batches.append(y.tolist())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "metrics": {k: _plain(v) for k, v in trainer.callback_metrics.items()},
            "alphas": self.alphas,
            "val_correct": self.correct,
            "val_seen": self.seen,
            "norm_layers": sorted({type(m).__name__ for m in pl_module.modules() if isinstance(m, nn.modules.batchnorm._NormBase)}),
            "weights": {k: v.detach().flatten().tolist() for k, v in pl_module.state_dict().items()},
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"{self.tag}-rank{trainer.global_rank}.json").write_text(json.dumps(record))
