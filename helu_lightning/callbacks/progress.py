"""``EpochProgress``: one line per epoch for fits that run without a progress bar (each run of a search or a
comparison), so a long study shows it is moving: the epoch, the monitored metric and the epoch's seconds. And
``VersionedRichProgressBar``, the default bar of ``helu-train`` fits: Lightning's rich bar with the logger's
version shown as the whole number it is."""

from __future__ import annotations

import math
import time
from typing import Any

from lightning.pytorch.callbacks import Callback, RichProgressBar

from .record import finite_number

__all__ = ["EpochProgress", "VersionedRichProgressBar"]


class EpochProgress(Callback):
    """Print ``  epoch 3/10: val/acc 0.9481, train/loss 0.21 (1.2 s)`` when each training epoch ends."""

    def __init__(self, monitor: str | None = None, indent: str = "  ") -> None:
        self.monitor, self.indent = monitor, indent
        self._start: float | None = None

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        seconds = time.perf_counter() - self._start if self._start is not None else math.nan
        total = trainer.max_epochs if trainer.max_epochs not in (None, -1) else "?"
        metrics = [f"{name} {value:.4g}" for name in (self.monitor, "train/loss")
                   if name and (value := finite_number(trainer.callback_metrics.get(name))) is not None]
        shown = f": {', '.join(metrics)}" if metrics else ""
        print(f"{self.indent}epoch {trainer.current_epoch + 1}/{total}{shown} ({seconds:.1f} s)", flush=True)



class VersionedRichProgressBar(RichProgressBar):
    """``RichProgressBar`` that shows ``v_num: 0``: the rich bar formats every number with ``.3f``, so the logger
    version 0 read ``v_num: 0.000`` as if it were a metric."""

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        if "v_num" in items:
            items["v_num"] = str(items["v_num"])
        return items
