"""One ownership rule for every command that writes into a folder its user names (``predict``, ``compare``,
``search``, ``plot``): a command replaces only files it recorded as its own, and refuses, before any work, when a
file of another's is in the way.

The record is ``<folder>/.helu-train-wrote``, JSON written atomically: each name with the sha256 of the content the
command wrote. A file is ours only while its content still has that hash, so a planted record that lists a user's
file (or a file the user has since edited) is not ownership; a record that is not a regular file or not the JSON
we write is refused."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import UserError
from .io import atomic_write_bytes, atomic_write_text

__all__ = ["RECORD", "owned", "refuse_foreign", "write_owned"]

RECORD = ".helu-train-wrote"
_FIX = "move the file away, or choose another --output_dir"


def _sha256(path: Path) -> str | None:
    """The sha256 of a regular file's content (not followed through a link); None for anything else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded(folder: Path) -> dict[str, str]:
    """``{name: sha256}`` of the files a helu-train command wrote into ``folder``."""
    path = folder / RECORD
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {}
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path} is not a regular file; remove it or choose another output folder")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        record = None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise UserError(f"{path} is not a record helu-train wrote (JSON {{\"files\": {{name: sha256}}}}); remove it, "
                        "and move away the files it claims, or choose another output folder")
    return files


def owned(folder: str | os.PathLike, name: str) -> bool:
    """Whether ``folder/name`` is a regular file whose content is what a helu-train command recorded writing."""
    folder = Path(folder)
    expected = _recorded(folder).get(name)
    return expected is not None and _sha256(folder / name) == expected


def refuse_foreign(folder: str | os.PathLike, names: Iterable[str], command: str, fix: str = _FIX) -> None:
    """UserError naming the first of ``names`` (relative to ``folder``) that exists but is not ours: not recorded,
    changed since it was written (its hash differs), or not a regular file (a link, a folder, a FIFO)."""
    folder = Path(folder)
    recorded = _recorded(folder)
    for name in names:
        path = folder / name
        if not os.path.lexists(path):
            continue
        if name not in recorded:
            why = "did not write it"
        elif _sha256(path) != recorded[name]:
            why = "wrote a file of that name, but its content has changed since (or it is not a regular file)"
        else:
            continue
        raise UserError(f"{path} already exists and helu-train {command} {why}; it replaces only its own earlier "
                        f"output: {fix}")


def write_owned(folder: str | os.PathLike, name: str, data: bytes, command: str, fix: str = _FIX) -> Path:
    """Write ``folder/name`` atomically unless a file there is not ours, and record its hash. The record is written
    first: a crash in between leaves a file that no longer matches it, which the next run refuses (never one it
    would replace unrecorded)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):  # several workers of one comparison finish into the same folder
        refuse_foreign(folder, [name], command, fix)
        files = {**_recorded(folder), name: hashlib.sha256(data).hexdigest()}
        atomic_write_text(folder / RECORD, json.dumps({"files": dict(sorted(files.items()))}, indent=1) + "\n")
        return atomic_write_bytes(folder / name, data)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive flock on the folder itself while its record and a file change together, so two processes
    writing into one folder never leave a record whose hash is the other's content."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
