"""Test-only callbacks that the DDP and fault-tolerance tests load into ``helu-train`` subprocesses.

They record what each rank saw in ``<out_dir>/<tag>-rank<r>.json``, or park the process at a known step so the
test can signal it there from outside.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from helu_lightning.activations import HeLU


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, Tensor) and value.numel() == 1 else value


class PauseAtStep(Callback):
    """After optimizer step ``step``, write ``marker`` and wait: killed there (SIGKILL), or go on after SIGTERM so
    that Lightning's own SIGTERM handling stops the fit at the next batch."""

    def __init__(self, step: int, marker: str) -> None:
        self.step = step
        self.marker = marker

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            Path(self.marker).write_text(json.dumps({"epoch": trainer.current_epoch, "step": trainer.global_step}))
            while not trainer.received_sigterm:
                time.sleep(0.1)


class RankDump(Callback):
    """Per rank, at the end of fit: logged metrics, the ActivationMonitor's last metrics, HeLU alphas at each train
    batch, this rank's own validation accuracy and activation sums (for checking cross-rank reduction), the
    normalisation layer types and the final weights."""

    def __init__(self, out_dir: str, tag: str = "run") -> None:
        self.out_dir = Path(out_dir)
        self.tag = tag
        self.alphas: list[list[float]] = []
        self._handles: list[Any] = []
        self._logits: list[Tensor] = []
        self.val: dict[str, float] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.alphas.append([m.alpha.item() for m in pl_module.modules() if isinstance(m, HeLU)])

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Hooks instead of an extra forward, so the ActivationMonitor counts each batch exactly once.
        self.val = {"correct": 0, "seen": 0, "band": 0, "elements": 0, "sum": 0.0}
        self._handles = [pl_module.model.register_forward_hook(lambda m, a, out: self._logits.append(out.detach()))]
        for module in pl_module.model.modules():
            if isinstance(module, HeLU):
                self._handles.append(module.register_forward_pre_hook(self._count))

    def _count(self, module: HeLU, args: tuple[Tensor, ...]) -> None:
        x = args[0].detach().double()
        self.val["band"] += int(((x > -module.alpha.double()) & (x <= 0)).sum())
        self.val["elements"] += x.numel()
        self.val["sum"] += float(x.sum())

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, *args: Any) -> None:
        y = batch[1]
        self.val["correct"] += int((self._logits.pop().argmax(dim=1) == y).sum())
        self.val["seen"] += int(y.numel())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        monitors = [cb for cb in trainer.callbacks if type(cb).__name__ == "ActivationMonitor"]
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "metrics": {k: _plain(v) for k, v in trainer.callback_metrics.items()},
            "monitor": monitors[0].last_metrics if monitors else {},
            "alphas": self.alphas,
            "val": self.val,
            "norm_layers": sorted({type(m).__name__ for m in pl_module.modules()
                                   if isinstance(m, nn.modules.batchnorm._NormBase)}),
            "weights": {k: v.detach().flatten().tolist() for k, v in pl_module.state_dict().items()},
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"{self.tag}-rank{trainer.global_rank}.json").write_text(json.dumps(record))
