"""Refuse to "resume" a run that has already trained to the Trainer's limits: Lightning would train nothing, test
again and add a log folder, all silently. The message says how to train further."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from .checkpoints import read_checkpoint
from .errors import UserError, shown_path

__all__ = ["refuse_a_finished_run", "resolve_last"]


def resolve_last(trainer: Trainer) -> str | None:
    """The newest ``last*.ckpt`` in the checkpoint callbacks' folders: the file ``--ckpt_path last`` resumes."""
    found = []
    for callback in trainer.checkpoint_callbacks:
        folder = getattr(callback, "dirpath", None)
        if isinstance(callback, ModelCheckpoint) and folder and os.path.isdir(folder):
            found += [os.path.join(folder, name) for name in os.listdir(folder)
                      if name.startswith(ModelCheckpoint.CHECKPOINT_NAME_LAST) and name.endswith(".ckpt")]
    return max(found, key=os.path.getmtime) if found else None


def _epochs_done(ckpt: dict[str, Any]) -> int | None:
    progress = (((ckpt.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress") or {}).get("current") or {}
    processed = progress.get("processed")
    return processed if isinstance(processed, int) and not isinstance(processed, bool) else None


def refuse_a_finished_run(trainer: Trainer, ckpt_path: Any, weights_only: bool = True) -> None:
    """Raise UserError when the checkpoint ``fit --ckpt_path`` resumes has reached ``max_epochs`` or ``max_steps``."""
    if ckpt_path == "last":
        ckpt_path = resolve_last(trainer)
    if not isinstance(ckpt_path, str) or "://" in ckpt_path or not os.path.isfile(ckpt_path):
        return  # "best"/"hpc"/"registry", URLs and missing files: Lightning resolves or refuses them
    ckpt = read_checkpoint(ckpt_path, weights_only=weights_only, trusted=True, unsafe_flag="--weights_only false")
    epochs, steps = _epochs_done(ckpt), ckpt.get("global_step")
    shown = shown_path(ckpt_path)
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    if max_steps not in (None, -1) and isinstance(steps, int) and steps >= max_steps:
        raise UserError(f"{shown} is a finished run: it trained {steps} step(s) and --trainer.max_steps is "
                        f"{max_steps}; "
                        f"to train further raise it (e.g. --trainer.max_steps {2 * max_steps} --ckpt_path last), or "
                        "evaluate it with `helu-train test --ckpt_path ...`")
    if max_epochs not in (None, -1) and epochs is not None and epochs >= max_epochs:
        raise UserError(f"{shown} is a finished run: it trained {epochs} epoch(s) and --trainer.max_epochs is "
                        f"{max_epochs}; to train further raise it (e.g. --trainer.max_epochs {2 * max_epochs} "
                        "--ckpt_path last), or evaluate it with `helu-train test --ckpt_path ...`")
