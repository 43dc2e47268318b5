"""``LastCheckpoint``: the unmonitored ``last.ckpt`` writer that ``helu-train`` adds beside a monitored
``ModelCheckpoint(save_last=True)``. When the monitored callback saved a file at this very step (the best epoch is
the latest), ``last.ckpt`` becomes a hard link to that file instead of a second copy: the text run's checkpoint is
273 MB. A hard link rather than Lightning's ``save_last: link`` symlink: it is an ordinary file to every reader
(resume, export, ``torch.load``) and survives the top-k rotation deleting the best file it shares."""

from __future__ import annotations

import os
from typing import Any
from weakref import proxy

from lightning.pytorch.callbacks import ModelCheckpoint

from ..checkpoint_io import note_written

__all__ = ["LastCheckpoint"]


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` for ``last.ckpt`` every epoch, stored once when another checkpoint callback of the same
    folder has just saved the same step."""

    def _saved_this_step(self, trainer: Any, filepath: str) -> str | None:
        """The file another checkpoint callback in ``filepath``'s folder wrote at the current step, if any."""
        folder = os.path.dirname(os.path.realpath(filepath))
        for callback in trainer.checkpoint_callbacks:
            if callback is self or not isinstance(callback, ModelCheckpoint):
                continue
            saved = callback._last_checkpoint_saved
            if (callback._last_global_step_saved == trainer.global_step and saved and os.path.isfile(saved)
                    and callback.save_weights_only == self.save_weights_only
                    and os.path.dirname(os.path.realpath(saved)) == folder
                    and os.path.realpath(saved) != os.path.realpath(filepath)):
                return saved
        return None

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        linked = False
        if trainer.is_global_zero:
            twin = self._saved_this_step(trainer, filepath)
            linked = twin is not None and _hard_link(twin, filepath)
        if not trainer.strategy.broadcast(linked, src=0):
            self._save_copy(trainer, filepath)
            return
        trainer.strategy.barrier("LastCheckpoint")
        note_written(trainer, filepath)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def _save_copy(self, trainer: Any, filepath: str) -> None:
        """Write ``filepath`` as a file of its own. While it still shares its data with the best file, write beside
        it and rename: Lightning's save may copy into the existing path (temp file on another device), which
        would write the best checkpoint's data too."""
        shared = trainer.is_global_zero and os.path.isfile(filepath) and os.stat(filepath).st_nlink > 1
        if not trainer.strategy.broadcast(shared, src=0):
            super()._save_checkpoint(trainer, filepath)
            return
        part = f"{filepath}.part"
        super()._save_checkpoint(trainer, part)
        if trainer.is_global_zero:
            os.replace(part, filepath)
            note_written(trainer, filepath)
        trainer.strategy.barrier("LastCheckpoint")
        self._last_checkpoint_saved = filepath


def _hard_link(source: str, target: str) -> bool:
    """Point ``target`` at ``source``'s data, replacing ``target`` atomically; False where the file system cannot
    (then the caller writes a copy)."""
    temporary = f"{target}.link-{os.getpid()}"
    try:
        if os.path.lexists(temporary):
            os.remove(temporary)
        os.link(source, temporary)
        os.replace(temporary, target)
    except OSError:
        if os.path.lexists(temporary):
            os.remove(temporary)
        return False
    return True
