"""``CheckedCheckpointIO``: the Trainer's CheckpointIO in every ``helu-train`` run, so that each checkpoint a Trainer
reads (``--ckpt_path`` and its ``last``/``best``/``hpc`` aliases, SLURM auto-resume, ``test_after_fit``'s best file,
search and compare trials) goes through :func:`helu_lightning.checkpoints.read_checkpoint`, and each file a
Trainer deletes (ModelCheckpoint's top-k rotation) is a plain file inside this run's checkpoint folder.

Saving is left to the CheckpointIO the Trainer had (``TorchCheckpointIO``, or one the config chose).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from lightning.fabric.plugins import CheckpointIO, TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities import rank_zero_warn

from .checkpoints import CheckpointError, forget_parsed_checkpoint, read_checkpoint
from .restored_state import checkpoint_folders, clean_callback_states
from .run_paths import outside_reason

__all__ = ["CheckedCheckpointIO", "bypasses_reader", "install_checked_io", "note_written",
           "refuse_self_loading_strategy", "refuse_url"]


def refuse_url(path: Any, what: str = "helu-train reads") -> None:
    """CheckpointError for a ``scheme://`` checkpoint: it is never loaded, least of all unpickled."""
    if isinstance(path, str) and "://" in path:
        raise CheckpointError(f"--ckpt_path {path} is a URL: {what} local files only; download it and pass the "
                              "local path")


class CheckedCheckpointIO(CheckpointIO):
    """Loads through the checked reader (restored callback paths cleaned), removes only files of this run's
    checkpoint folders, saves through ``inner``."""

    def __init__(self, trainer: Trainer, inner: CheckpointIO | None = None, trusted: bool = False) -> None:
        self._trainer = weakref.ref(trainer)
        self.inner = inner if inner is not None else TorchCheckpointIO()
        self.trusted = trusted
        self.owned: set[str] = set()  # files this process saved, and restored top-k files that passed the check

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        self.inner.save_checkpoint(checkpoint, path, storage_options=storage_options)
        self.owned.add(os.path.abspath(str(path)))

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        """The checked reader on a local file; pickles only when the run trusts its checkpoints."""
        refuse_url(str(path))
        trusted = self.trusted or weights_only is False
        ckpt = read_checkpoint(path, weights_only=not trusted, trusted=trusted, unsafe_flag="--weights_only false",
                               trust_flag="--trust_checkpoint true")
        forget_parsed_checkpoint()  # the restore is the command's last reader of this file
        trainer = self._trainer()
        if trainer is not None:
            self.owned |= clean_callback_states(ckpt, trainer, path)
        return ckpt

    def remove_checkpoint(self, path: Any) -> None:
        """Delete ``path`` only when it is a ``.ckpt`` file inside this run's checkpoint folders that this process
        saved or a restored top-k list named after checking it (never a user's file that happens to sit there)."""
        trainer = self._trainer()
        folders = checkpoint_folders(trainer) if trainer is not None else []
        reason = outside_reason(str(path), folders)
        if reason is None and (os.path.isdir(path) or not str(path).endswith(".ckpt")):
            reason = "not a checkpoint file"
        if reason is None and os.path.abspath(str(path)) not in self.owned | _fixed_files(trainer):
            reason = "a file this run neither saved nor restored"
        if reason is not None:
            rank_zero_warn(f"not deleting {path}: {reason}; a run deletes only checkpoint files in its own folder")
            return
        if os.path.lexists(path):
            os.remove(path)  # a file, or a link to one inside the folder (the link goes, never its target)

    def teardown(self) -> None:
        self.inner.teardown()


def _fixed_files(trainer: Trainer | None) -> set[str]:
    """The one fixed file of each callback that has one (``OnExceptionCheckpoint.ckpt_path``): it removes its own
    file at teardown, also when an earlier process wrote it."""
    callbacks = trainer.checkpoint_callbacks if trainer is not None else []
    return {os.path.abspath(c.ckpt_path) for c in callbacks if isinstance(getattr(c, "ckpt_path", None), str)}


def note_written(trainer: Trainer, path: str) -> None:
    """Record ``path`` as a checkpoint this run wrote by other means than ``save_checkpoint`` (a hard link), so its
    rotation may delete it."""
    checkpoint_io = trainer.strategy.checkpoint_io
    if isinstance(checkpoint_io, CheckedCheckpointIO):
        checkpoint_io.owned.add(os.path.abspath(path))


def install_checked_io(trainer: Trainer, trusted: bool = False) -> CheckedCheckpointIO:
    """Put a CheckedCheckpointIO in front of the Trainer's own CheckpointIO (once)."""
    current = trainer.strategy.checkpoint_io
    if isinstance(current, CheckedCheckpointIO):
        current.trusted = trusted
        return current
    checked = CheckedCheckpointIO(trainer, inner=current, trusted=trusted)
    trainer.strategy.checkpoint_io = checked
    return checked


def bypasses_reader(strategy: Strategy | type[Strategy]) -> bool:
    """Whether a strategy reads checkpoints itself instead of through its CheckpointIO (the checked reader):
    DeepSpeed (its engine), FSDP (sharded folders and full files alike) and ModelParallel override
    ``Strategy.load_checkpoint``."""
    cls = strategy if isinstance(strategy, type) else type(strategy)
    return cls.load_checkpoint is not Strategy.load_checkpoint


def refuse_self_loading_strategy(trainer: Trainer, ckpt_path: Any, trusted: bool) -> None:
    """UserError, before anything is loaded, when an untrusted ``--ckpt_path`` would be read by a strategy that
    bypasses the checked reader (it would unpickle the file, or load a folder the reader never sees)."""
    if ckpt_path is None or trusted or not bypasses_reader(trainer.strategy):
        return
    name = type(trainer.strategy).__name__
    raise CheckpointError(f"--ckpt_path {ckpt_path}: the {name} strategy loads checkpoints itself, past helu-train's "
                          "checked reader (which refuses pickles and foreign import paths); pass --trust_checkpoint "
                          "true for a checkpoint you made yourself, or load it with a strategy that reads through "
                          "the CheckpointIO (auto, ddp)")
