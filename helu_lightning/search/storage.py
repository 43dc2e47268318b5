"""Where a study lives (SQLite, a journal file, PostgreSQL) and how trials of dead workers are failed and retried."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from helu_lightning.search.options import SearchSetupError, sqlite_url
from helu_lightning.search.optuna_internals import fail_running_trial

__all__ = [
    "FINISHED", "fail_dead_local_trials", "make_storage", "redact", "retry_callback", "sqlite_url",
    "trials_counted", "worker_identity",
]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


def make_storage(
    url: str, heartbeat_interval: int = 60, grace_period: int | None = None, max_retry: int = 3
) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL: ``sqlite:///f.db`` / ``postgresql://...`` (RDB, with heartbeat and retry of
    a dead worker's trial) or ``journal:///path/f.log`` (a JournalFileBackend file shared by processes on one host)."""
    if url.startswith("journal://"):
        path = Path(url[len("journal://") :])
        if not path.name:
            raise SearchSetupError(f"storage {url!r} names no file; use journal:///absolute/path/study.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.split("+")[0] not in RDB_SCHEMES:
        raise SearchSetupError(
            f"unsupported storage URL {redact(url)!r}; use sqlite:///path/study.db (one process), "
            "journal:///path/study.log (several processes, one machine) or "
            "postgresql://user:password@host:5432/db (a cluster)"
        )
    if scheme == "sqlite":
        database = _database(url)
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    return _rdb_storage(url, heartbeat_interval, grace_period, max_retry)


def _database(url: str) -> str | None:
    """The database part of an RDB URL as SQLAlchemy reads it (percent-escapes decoded)."""
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        return sqlalchemy.engine.make_url(url).database
    except (sqlalchemy.exc.ArgumentError, ValueError) as err:
        raise SearchSetupError(f"cannot read storage URL {redact(url)!r}: {err}") from None


# Any fixed 64-bit number: the PostgreSQL advisory lock that workers hold while they create the study tables.
_SCHEMA_LOCK = 0x68656C75


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """On PostgreSQL, hold an advisory lock while Optuna creates its tables: workers started together (a SLURM
    array) otherwise race in CREATE TABLE and all but one die (``DuplicateTable: relation "studies" already
    exists``). Other databases get no lock; their races are retried."""
    if not url.startswith(("postgresql", "postgres")):
        yield
        return
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK})
    finally:
        engine.dispose()


def _rdb_storage(
    url: str, heartbeat_interval: int, grace_period: int | None, max_retry: int
) -> optuna.storages.RDBStorage:
    import sqlalchemy.exc

    races = 0
    while True:
        try:
            with _schema_lock(url), warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=retry_callback(max_retry),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as err:
            # Workers started together raced to create the tables ("already exists"); the winner's are there now.
            races += 1
            if races == 5 or not _is_creation_race(err):
                raise SearchSetupError(f"cannot open storage {redact(url)!r}: {err.__class__.__name__}: "
                                       f"{err}") from err
            time.sleep(0.5 * races)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError) as err:
            raise SearchSetupError(f"cannot open storage {redact(url)!r}: {err.__class__.__name__}: {err}") from err


def _is_creation_race(err: Exception) -> bool:
    """A table, type or row that another worker created first (what a retry gets past)."""
    import sqlalchemy.exc

    text = str(err).lower()
    return isinstance(err, sqlalchemy.exc.IntegrityError) or "already exists" in text or "duplicate" in text


def retry_callback(max_retry: int) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Optuna's re-enqueue of a dead worker's trial (renamed in Optuna 4.9; the old name still works before)."""
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return (retry or optuna.storages.RetryFailedTrialCallback)(max_retry=max_retry)


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for error messages."""
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@", 1)[0]:
        user = tail.split("@", 1)[0].split(":", 1)[0]
        return f"{head}{sep}{user}:***@{tail.split('@', 1)[1]}"
    return url


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc``); None where that cannot be read.

    A process id alone does not name a process: ids are reused, and in containers every worker may be pid 1."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def worker_identity() -> dict[str, Any]:
    """This process as a trial records it: host name, process id and the process's start time."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _start_time(pid)}


def _worker_alive(worker: dict[str, Any]) -> bool:
    """Whether the process that recorded ``worker`` (on this host) still runs: its id is in use and, where its start
    time was recorded, by a process that started then (not a later one that got the same id)."""
    pid = int(worker["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = worker.get("started")
    return started is None or _start_time(pid) in (None, started)


def fail_dead_local_trials(study: optuna.Study, max_retry: int = 3) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker ran on this host and is gone, and enqueue their retries; with a
    heartbeat (RDB storages) also those whose heartbeat stopped, wherever their worker ran.

    Journal files have no heartbeat (Optuna 5.1), and on one host a process that no longer runs is proof enough, at
    once, whatever id the new worker has. Returns the failed trial numbers (the heartbeat's are not counted).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a no-op without a heartbeat; retries through the storage's callback
    me = worker_identity()
    failed = []
    retry = retry_callback(max_retry)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        if worker.get("trial") != trial.number or worker.get("host") != me["host"] or "pid" not in worker:
            continue
        if {key: worker.get(key) for key in me} == me or _worker_alive(worker):
            continue
        if (stored := fail_running_trial(study, trial)) is None:
            continue
        failed.append(trial.number)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, stored)
    return failed


def trials_counted(study: optuna.Study) -> int:
    """Trials that count toward ``--n_trials``: finished or running, plus failures that were not retried."""
    trials = study.get_trials(deepcopy=False)
    retried = {number for t in trials for number in t.system_attrs.get("retry_history", ())}
    return sum(
        t.state in (*FINISHED, TrialState.RUNNING) or (t.state == TrialState.FAIL and t.number not in retried)
        for t in trials
    )
