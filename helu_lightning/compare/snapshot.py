"""Read a `helu-train compare` study from someone else's ``study.db`` without touching it: the file is opened
read-only and copied into a temporary database, and Optuna (which creates and migrates tables on connect) only ever
sees the copy. A study still being written is read as of one committed moment."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy.exc

from helu_lightning.errors import DataError
from helu_lightning.io import regular_file

__all__ = ["read_study"]

FIX = "pass a helu-train compare --output_dir folder"


def _uri(path: Path) -> str:
    """A read-only SQLite URI of ``path``. A WAL-mode database whose -wal file is absent holds everything in the
    file itself, and is opened immutable, as SQLite would otherwise create its -wal and -shm files beside it."""
    with path.open("rb") as handle:
        header = handle.read(20)
    wal = header.startswith(b"SQLite format 3\0") and header[18] == 2
    quiet = wal and not Path(f"{path}-wal").exists()
    return f"{path.resolve().as_uri()}?mode=ro{'&immutable=1' if quiet else ''}"


def _copy(path: Path, copy: Path) -> None:
    """Copy the SQLite database at ``path`` into ``copy`` through a read-only connection (never writes ``path``)."""
    try:
        source = sqlite3.connect(_uri(path), uri=True)
        try:
            target = sqlite3.connect(copy)
            try:
                source.backup(target)
                tables = {row[0] for row in target.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as err:
        raise DataError(f"{path} cannot be read as an SQLite database ({err}); {FIX}") from None
    if "studies" not in tables:
        raise DataError(f"{path} is not an Optuna study database (no studies table); {FIX}")


@contextlib.contextmanager
def read_study(folder: str | Path, study_name: str = "helu-compare") -> Iterator[optuna.Study]:
    """The study ``study_name`` of ``folder/study.db``, read from a private copy that is deleted afterwards; a
    DataError (one line naming the path and the fix) when the folder holds no readable study of that name."""
    path = regular_file(Path(folder) / "study.db", fix=FIX)
    with tempfile.TemporaryDirectory(prefix="helu-study-") as tmp:
        copy = Path(tmp) / "study.db"
        _copy(path, copy)
        storage = f"sqlite:///{copy}"
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
            study.get_trials(deepcopy=False)  # read now: a foreign schema fails here, not in the caller
        except KeyError:
            names = optuna.get_all_study_names(storage)
            raise DataError(f"{path} holds no study named {study_name!r}; pass --study_name with one of: "
                            f"{', '.join(names) or 'none (the database holds no study)'}") from None
        except (RuntimeError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as err:
            reason = str(err.__cause__ or err).splitlines()[0]  # a schema of another Optuna version or program
            raise DataError(f"{path} cannot be read by Optuna {optuna.__version__}: {reason}; {FIX}") from None
        yield study
