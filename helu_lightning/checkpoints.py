"""Reading checkpoints safely: one place that turns a missing, corrupt, foreign or pickle-carrying file into an
error naming the path and the fix (used by ``helu-train fit/validate/test/predict --ckpt_path`` and ``export``)."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

__all__ = ["CheckpointError", "read_checkpoint"]


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or not a Lightning checkpoint."""


def read_checkpoint(
    path: str | Path, weights_only: bool = True, unsafe_flag: str = "weights_only=False", data: bytes | None = None
) -> dict[str, Any]:
    """Load a Lightning checkpoint on the CPU: from ``data``, the file's bytes when the caller already read them,
    else memory-mapped from ``path`` (only what is touched is read).

    ``weights_only`` refuses pickled Python objects; the error names ``unsafe_flag``, the caller's opt-in switch.
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist{' (it is a directory)' if path.is_dir() else ''}; "
                              "pass --ckpt_path with a .ckpt file written by Lightning")
    if not zipfile.is_zipfile(io.BytesIO(data) if data is not None else path):
        size = len(data) if data is not None else path.stat().st_size
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: torch.save and Lightning write a zip "
                              f"archive and these {size} bytes are not one; re-copy it or choose another checkpoint")
    try:
        if data is not None:
            ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=weights_only)
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except pickle.UnpicklingError as err:
        reason = next((line for line in str(err).splitlines() if "Unsupported" in line), str(err).splitlines()[0])
        raise CheckpointError(f"checkpoint {path} holds pickled Python objects that weights_only loading refuses "
                              f"({reason.strip()}); if you trust the file, pass {unsafe_flag}") from err
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({str(err).splitlines()[0]}); re-copy it "
                              "or choose another checkpoint") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        found = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no 'state_dict' (found {found}); "
                              "pass a .ckpt written by Trainer / ModelCheckpoint")
    return ckpt
