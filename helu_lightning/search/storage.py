"""Where a study lives (SQLite, a journal file, PostgreSQL) and how trials of dead workers are failed and retried."""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from helu_lightning.search.options import SearchSetupError
from helu_lightning.search.optuna_internals import fail_running_trial

__all__ = [
    "FINISHED", "fail_dead_local_trials", "make_storage", "redact", "retry_callback", "trials_counted",
    "worker_identity",
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
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return _rdb_storage(url, heartbeat_interval, grace_period, max_retry)


def _rdb_storage(
    url: str, heartbeat_interval: int, grace_period: int | None, max_retry: int
) -> optuna.storages.RDBStorage:
    import sqlalchemy.exc

    races = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=retry_callback(max_retry),
                )
        except sqlalchemy.exc.IntegrityError:
            races += 1  # workers started together raced to create the tables; the winner's are there now
            if races == 3:
                raise
            time.sleep(1.0)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError) as err:
            raise SearchSetupError(f"cannot open storage {redact(url)!r}: {err.__class__.__name__}: {err}") from err


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


def worker_identity() -> dict[str, Any]:
    """This process as a trial records it: host name and process id."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_local_trials(study: optuna.Study, max_retry: int = 3) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker ran on this host and is gone, and enqueue their retries.

    The heartbeat does this for RDB storages after a grace period; journal files have no heartbeat, and on one
    host a dead process id is proof enough, at once. Returns the failed trial numbers.
    """
    me = worker_identity()
    failed = []
    retry = retry_callback(max_retry)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        if worker.get("trial") != trial.number or worker.get("host") != me["host"] or worker.get("pid") == me["pid"]:
            continue
        if _pid_alive(int(worker["pid"])):
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
