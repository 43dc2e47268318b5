"""``helu-train search``: Optuna studies over a fit config (space, storage, objective, report, the command).

Modules: ``options`` (SearchOptions, the direction from the metric's name), ``space`` (what is sampled and how it
enters a config), ``config`` (composing and checking the fit configs), ``storage`` (where the study lives, dead
workers' trials), ``optuna_internals`` (the private Optuna calls, in one place), ``objective`` (one trial),
``study`` (a whole search), ``report`` (summary.csv, best.yaml, plots), ``command`` (the command line).
"""

from helu_lightning.callbacks.epochs import EpochCounter
from helu_lightning.search.command import build_parser, main, options_from_args, run
from helu_lightning.search.config import check_trial_config, compose_configs, logs_into
from helu_lightning.search.objective import Objective, make_pruner
from helu_lightning.search.options import (
    DIRECTIONS,
    PRUNERS,
    SearchOptions,
    SearchSetupError,
    infer_direction,
    resolve_direction,
)
from helu_lightning.search.report import format_table, summary_rows, write_outputs, write_plots
from helu_lightning.search.space import (
    ALPHA_BASELINE,
    DEFAULT_SPACE,
    KNOWN_PARAMS,
    SCHEDULE_END_RATIO,
    SCHEDULE_TARGET,
    SearchParam,
    apply_params,
    load_space,
)
from helu_lightning.search.storage import (
    FINISHED,
    fail_dead_local_trials,
    make_storage,
    redact,
    retry_callback,
    sqlite_url,
    trials_counted,
    worker_identity,
)
from helu_lightning.search.study import calibrated_alpha, open_study, prepare_search, run_search

__all__ = [
    "ALPHA_BASELINE",
    "DEFAULT_SPACE",
    "DIRECTIONS",
    "FINISHED",
    "KNOWN_PARAMS",
    "PRUNERS",
    "SCHEDULE_END_RATIO",
    "SCHEDULE_TARGET",
    "EpochCounter",
    "Objective",
    "SearchOptions",
    "SearchParam",
    "SearchSetupError",
    "apply_params",
    "build_parser",
    "calibrated_alpha",
    "check_trial_config",
    "compose_configs",
    "fail_dead_local_trials",
    "format_table",
    "infer_direction",
    "load_space",
    "logs_into",
    "main",
    "make_pruner",
    "make_storage",
    "open_study",
    "options_from_args",
    "prepare_search",
    "redact",
    "resolve_direction",
    "retry_callback",
    "run",
    "run_search",
    "sqlite_url",
    "summary_rows",
    "trials_counted",
    "worker_identity",
    "write_outputs",
    "write_plots",
]
