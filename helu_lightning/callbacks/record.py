"""RunRecorder: what a comparison keeps of one fit besides its metric, written as JSON when the fit ends.

Per epoch the validation metrics and the ActivationMonitor's latest dead-unit and band fractions (the curves) and
the seconds the epoch took (training + validation); at the end the monitor's last fractions and the best
checkpoint's path.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ..io import atomic_write_text
from .monitor import ActivationMonitor

__all__ = ["MONITOR_KEYS", "RunRecorder"]

# Pooled statistics of the ActivationMonitor that a comparison reports.
MONITOR_KEYS = ("monitor/val/dead_fraction", "monitor/val/band_fraction",
                "monitor/train/dead_fraction", "monitor/train/band_fraction")


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (a logged metric, a tensor), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _monitored(trainer: pl.Trainer) -> dict[str, float]:
    """The ActivationMonitors' latest pooled fractions (MONITOR_KEYS) that are finite numbers."""
    monitored: dict[str, float] = {}
    for callback in trainer.callbacks:
        if isinstance(callback, ActivationMonitor):
            latest = {k: finite_number(callback.last_metrics.get(k)) for k in MONITOR_KEYS}
            monitored.update({k: v for k, v in latest.items() if v is not None})
    return monitored


class RunRecorder(Callback):
    """Record validation and dead-unit/band curves, epoch times, final monitor fractions and the best checkpoint
    into ``path``."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.curves: list[dict[str, float]] = []
        self.epoch_seconds: list[float] = []
        self._epoch_start: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch_start is not None:
            self.epoch_seconds.append(time.perf_counter() - self._epoch_start)
            self._epoch_start = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = {k: finite_number(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        row.update(_monitored(trainer))  # the monitor logged this validation run's fractions just before
        self.curves.append({"epoch": trainer.current_epoch, **{k: v for k, v in row.items() if v is not None}})

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        monitored = _monitored(trainer)
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
        record = {"curves": self.curves, "epoch_seconds": self.epoch_seconds, "monitor": monitored,
                  "best_checkpoint": best or None}
        atomic_write_text(self.path, json.dumps(record, indent=1) + "\n")
