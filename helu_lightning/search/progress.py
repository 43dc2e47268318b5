"""What a long study prints: ``run k of N`` with an estimate of the time left before each run, and its outcome
after it. Optuna's own per-trial lines are silenced while it runs: they name a "best trial", which means nothing
in a comparison, and a failed trial would print a 40-line traceback before helu-train's one-line error."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["StudyProgress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 05 min``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class StudyProgress:
    """``begin(done)`` before each run prints ``<prog>: run k of N, about T left``; as an Optuna callback it prints
    the run's outcome. The estimate is the mean of this invocation's finished runs times the runs left."""

    def __init__(self, prog: str, total: int, describe: Callable[[FrozenTrial], str], monitor: str) -> None:
        self.prog, self.total, self.describe, self.monitor = prog, total, describe, monitor
        self.seconds: list[float] = []
        self._k, self._start = 0, 0.0

    def begin(self, done: int) -> None:
        self._k, self._start = min(done + 1, self.total), time.monotonic()
        left = self.total - done
        estimate = (f", about {format_seconds(sum(self.seconds) / len(self.seconds) * left)} left"
                    if self.seconds else "")
        print(f"{self.prog}: run {self._k} of {self.total}{estimate}", flush=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        seconds = time.monotonic() - self._start
        self.seconds.append(seconds)
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            outcome = f"{self.monitor} {trial.value:.4g}"
        elif trial.state == TrialState.PRUNED:
            holder = trial.user_attrs.get("duplicate_of")
            outcome = "pruned" if holder is None else f"skipped (trial {holder} runs it)"
        else:
            outcome = trial.user_attrs.get("refused") or trial.state.name.lower()
        print(f"{self.prog}: run {self._k} of {self.total} ({self.describe(trial)}): {outcome} in "
              f"{format_seconds(seconds)}", flush=True)

    @staticmethod
    @contextlib.contextmanager
    def optuna_quiet() -> Iterator[None]:
        """Optuna's logging at ERROR while the study runs; the previous level after."""
        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            yield
        finally:
            optuna.logging.set_verbosity(level)
