"""Files a command writes into a folder it shares with its user (``plot`` and ``search`` ``--output_dir``): each
write is recorded in ``<folder>/.helu-train-wrote``, and a file of the same name that is not recorded there is the
user's and is never replaced. Re-running the command into its own folder replaces its own files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from .errors import UserError
from .io import atomic_write_bytes, atomic_write_text

__all__ = ["RECORD", "refuse_foreign", "write_owned"]

RECORD = ".helu-train-wrote"


def _recorded(folder: Path) -> set[str]:
    path = folder / RECORD
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return set()
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path} is not a regular file; remove it or choose another --output_dir")
    return {line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line}


def refuse_foreign(folder: str | os.PathLike, names: Iterable[str], command: str) -> None:
    """UserError naming the first of ``names`` (relative to ``folder``) that exists but was not written there by a
    helu-train command."""
    folder = Path(folder)
    recorded = _recorded(folder)
    for name in names:
        path = folder / name
        if os.path.lexists(path) and (name not in recorded or not path.is_file() or path.is_symlink()):
            raise UserError(f"{path} already exists and helu-train {command} did not write it; it replaces only "
                            "its own earlier output: choose another --output_dir, or move the file away")


def write_owned(folder: str | os.PathLike, name: str, data: bytes, command: str) -> Path:
    """Write ``folder/name`` atomically unless a file there is not ours; record it as ours first, so a crash never
    leaves an unrecorded file of ours."""
    folder = Path(folder)
    refuse_foreign(folder, [name], command)
    recorded = _recorded(folder)
    if name not in recorded:
        atomic_write_text(folder / RECORD, "".join(f"{line}\n" for line in sorted(recorded | {name})))
    return atomic_write_bytes(folder / name, data)
