"""The options of one search as a typed object, checked when built: the direction follows the metric's name."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from helu_lightning.errors import UserError

__all__ = ["DIRECTIONS", "PRUNERS", "SEARCH_FLAGS", "SearchOptions", "SearchSetupError", "infer_direction"]

DIRECTIONS = ("maximize", "minimize")
PRUNERS = ("median", "hyperband", "successive_halving", "none")

# Words of a metric name (split at anything not a letter or digit) that say which way is better.
MINIMIZED_WORDS = frozenset(
    {"loss", "error", "err", "mse", "mae", "rmse", "msle", "perplexity", "ppl", "nll", "wer", "cer", "ece", "brier"}
)
MAXIMIZED_WORDS = frozenset(
    {
        "acc", "accuracy", "f1", "fbeta", "mcc", "matthews", "pearson", "spearman", "corr", "auroc", "auc", "auprc",
        "ap", "map", "precision", "recall", "top1", "top5", "iou", "dice", "r2", "bleu", "rouge", "specificity",
    }
)


class SearchSetupError(UserError):
    """A bad config, space, storage or study option, found before any study or trial exists."""


def sqlite_url(path: str | os.PathLike) -> str:
    """The SQLite URL of ``path`` (made absolute), quoted so that no character of a folder name (``?``, ``#``,
    ``%``, a space) turns into a URL query, fragment or escape: the study lives in exactly that file."""
    import sqlalchemy.engine

    return sqlalchemy.engine.URL.create("sqlite", database=str(Path(path).resolve())).render_as_string()


def infer_direction(monitor: str) -> str | None:
    """``"minimize"`` for a loss or error, ``"maximize"`` for a score such as accuracy or F1, None when the name does
    not say (or says both)."""
    words = set(re.split(r"[^a-z0-9]+", monitor.lower()))
    minimized, maximized = bool(words & MINIMIZED_WORDS), bool(words & MAXIMIZED_WORDS)
    if minimized == maximized:
        return None
    return "minimize" if minimized else "maximize"


def resolve_direction(monitor: str, direction: str | None, force: bool) -> str:
    """The study's direction: the one the metric's name implies; an explicit one must agree unless forced."""
    if direction is not None and direction not in DIRECTIONS:
        raise SearchSetupError(f"--direction must be maximize or minimize, got {direction!r}")
    implied = infer_direction(monitor)
    if implied is None:
        if direction is None:
            raise SearchSetupError(
                f"cannot tell whether to maximize or minimize {monitor!r} from its name; "
                "pass --direction maximize or --direction minimize"
            )
        return direction
    if direction is not None and direction != implied and not force:
        raise SearchSetupError(
            f"--direction {direction} contradicts --monitor {monitor!r}, which is better when it is "
            f"{'smaller' if implied == 'minimize' else 'larger'}; drop --direction, or add --force_direction "
            f"to {direction} it anyway"
        )
    return direction or implied


# The smallest value each whole-number option takes.
_LEAST = {
    "n_trials": 1, "pruner_startup_trials": 0, "pruner_warmup_epochs": 0, "sampler_startup_trials": 0,
    "heartbeat_interval": 1, "grace_period": 1, "max_retry": 0,
}


@dataclass
class SearchOptions:
    """Everything a search needs besides the space and the fit configs' contents (``helu-train search --help``).

    ``direction`` None is inferred from ``monitor``; after construction it holds the direction the study uses.
    """

    configs: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    space: str | None = None
    study_name: str = "helu-search"
    storage: str | None = None
    n_trials: int = 20
    timeout: float | None = None
    output_dir: Path = Path("runs/search")
    monitor: str = "val/acc"
    direction: str | None = None
    force_direction: bool = False
    pruner: str = "median"
    pruner_startup_trials: int = 5
    pruner_warmup_epochs: int = 0
    sampler_seed: int = 0
    sampler_startup_trials: int = 10
    heartbeat_interval: int = 60
    grace_period: int | None = None
    max_retry: int = 3
    calibration: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.configs, str):
            self.configs = (self.configs,)
        self.configs, self.overrides = tuple(str(c) for c in self.configs), tuple(self.overrides)
        self.output_dir = Path(self.output_dir)
        if not self.configs:
            raise SearchSetupError("give the fit config to search with --config FILE (several compose in order)")
        for name, least in _LEAST.items():
            value = getattr(self, name)
            if value is not None and value < least:
                raise SearchSetupError(f"--{name} must be at least {least}, got {value}")
        if self.timeout is not None and (math.isnan(self.timeout) or self.timeout <= 0):
            raise SearchSetupError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if self.pruner not in PRUNERS:
            raise SearchSetupError(f"unknown pruner {self.pruner!r}; use {', '.join(PRUNERS)}")
        self.direction = resolve_direction(self.monitor, self.direction, self.force_direction)

    @property
    def storage_url(self) -> str:
        """The storage given, else a SQLite file ``study.db`` in the output directory."""
        return self.storage or sqlite_url(self.output_dir / "study.db")


# The command's flags, for the "did you mean" of an unknown option: each field is named as its flag but these.
_FLAG_OF_FIELD = {"configs": "--config", "calibration": "--no_calibration"}
SEARCH_FLAGS = tuple(_FLAG_OF_FIELD.get(f.name, f"--{f.name}") for f in fields(SearchOptions) if f.name != "overrides")
