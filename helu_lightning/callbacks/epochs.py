"""``EpochCounter``: how many training epochs a fit started, for the search's compute accounting."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

__all__ = ["EpochCounter"]


class EpochCounter(Callback):
    """Counts training epochs started, the partial one of a pruned trial included (compute accounting)."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.epochs += 1
