"""One ``fit`` at a time per ``default_root_dir``: ``<default_root_dir>/.helu-train.lock`` is held (``fcntl.flock``)
for the run's lifetime and names its process. A second fit into the same folder stops with a message naming the
first; a lock file left by a process that died is taken over with a warning (the kernel released its lock).

Only the launching process (global rank 0) takes the lock: DDP workers and the other SLURM tasks of the same run
share the folder on purpose.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import time
from collections.abc import Iterator

from lightning.pytorch.utilities import rank_zero_warn

from .errors import UserError

__all__ = ["LOCK_NAME", "RunLockedError", "is_launching_process", "run_lock"]

LOCK_NAME = ".helu-train.lock"
# Set by torchrun, Lightning's DDP launcher, SLURM's srun and jsrun in every process but the first.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


class RunLockedError(UserError):
    """Another ``helu-train fit`` is running in the same ``default_root_dir``."""


def is_launching_process() -> bool:
    """True outside distributed runs and in the process of global rank 0 (every rank variable unset or 0)."""
    return all(os.environ.get(name, "0") in ("", "0") for name in _RANK_VARIABLES)


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"process {info['pid']} on {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _open_lock_file(path: str) -> int:
    """A descriptor of ``path`` as a plain file of its own; UserError for a link, a FIFO, a device, a folder or a
    hard link to another file, which the run would otherwise write into or block on."""
    fix = f"remove {path} (helu-train creates it afresh) or choose another --trainer.default_root_dir"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        raise UserError(f"{path} is not a plain lock file ({error.strerror}); {fix}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        kind = "a hard link shared with another file" if stat.S_ISREG(info.st_mode) else "not a regular file"
        raise UserError(f"{path} is {kind}; {fix}")
    return fd


@contextlib.contextmanager
def run_lock(folder: str) -> Iterator[None]:
    """Hold ``folder``'s run lock while the block runs; RunLockedError when another live process holds it."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    while True:
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0).decode("utf-8", errors="replace"))
            os.close(fd)
            raise RunLockedError(f"{folder} is in use by another helu-train fit ({holder}); wait for it to finish, "
                                 "or choose another --trainer.default_root_dir") from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break  # still the file at `path` (not one a finishing run just removed)
        os.close(fd)
    previous = os.read(fd, 4096).decode("utf-8", errors="replace")
    if previous.strip():
        rank_zero_warn(f"{path}: taking over the lock of {_holder(previous)}, which ended without releasing it")
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
