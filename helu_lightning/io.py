"""Atomic file and directory writes: a reader never sees half a file, and a crash never leaves one."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError, MissingDataError

__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_text", "read_utf8", "regular_file"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc = ctypes.util.find_library("c")
    renameat2 = getattr(ctypes.CDLL(libc, use_errno=True), "renameat2", None) if libc else None
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0


def _replace_directory(new: Path, path: Path) -> None:
    """Put folder ``new`` at ``path`` (an existing folder): atomically where the OS can swap, and never leaving
    ``path`` missing after an error; the old folder is removed."""
    if _exchange(new, path):
        shutil.rmtree(new, ignore_errors=True)  # now holds the old contents
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, old)  # a folder onto an empty folder
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it is renamed to ``path``, on error removed.

    An existing ``path`` is refused unless ``overwrite`` is set, in which case it is replaced only after the
    new contents are complete; only a folder (not a file or a symbolic link) is ever replaced.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} already exists; choose another directory or pass overwrite=True "
                                  "(--overwrite)")
        if path.is_symlink() or not path.is_dir():
            raise FileExistsError(f"{path} is not a folder; only a folder is replaced, so choose another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes an owner-only directory; give the usual permissions
    try:
        yield tmp
        if path.exists():
            _replace_directory(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def regular_file(path: str | os.PathLike, fix: str = "replace it with the data file it should be") -> Path:
    """``path`` when it is a regular file (links followed); MissingDataError when nothing is there, DataError when
    it is a device, a pipe, a socket or a folder: reading one would block forever or never end (``/dev/zero``)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(f"{path} is a dangling link (its target {os.readlink(path)!r} does not exist); "
                            f"{fix}") from None
        raise MissingDataError(f"{path} does not exist; {fix}") from None
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror}); {fix}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else \
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket"
        link = f" (a link to {os.path.realpath(path)})" if path.is_symlink() else ""
        raise DataError(f"{path} is not a regular file: it is {kind}{link}; {fix}")
    return path


def read_utf8(path: str | os.PathLike) -> str:
    """The text of a UTF-8 file (a leading byte-order mark dropped); DataError naming the line of a non-UTF-8 byte."""
    data = regular_file(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: byte {data[err.start]:#04x} is not UTF-8; re-encode the file as "
                        "UTF-8 (e.g. iconv -f latin1 -t utf-8) or fetch it again") from None
