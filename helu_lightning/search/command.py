r"""``helu-train search``: tune HeLU's alpha (and lr, weight decay, ...) with Optuna on top of a ``fit`` config.

    helu-train search --config configs/offline.yaml --n_trials 20 --output_dir runs/search
    helu-train search --config configs/offline.yaml --space configs/search/alpha_lr_schedule.yaml \
        --storage journal:///tmp/study.log --study_name digits     # start this in several shells

Each trial is one ``fit`` of the config with the sampled values merged in, in ``output_dir/trials/<number>/``.
``--n_trials`` is the study's total, so re-running the same command resumes it; ``--timeout`` is per invocation.
Arguments this parser does not know (``--trainer.max_epochs 3``) go to every trial's LightningCLI.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields

import optuna

from helu_lightning.search.options import DIRECTIONS, PRUNERS, SearchOptions
from helu_lightning.search.study import run_search

__all__ = ["build_parser", "main", "options_from_args", "run"]


class _PassThroughParser(argparse.ArgumentParser):
    """``parse_args`` keeps the options it does not know in ``args.overrides``: they go to every trial's fit."""

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        known, overrides = self.parse_known_args(args, namespace)
        known.overrides = overrides
        return known


def build_parser() -> argparse.ArgumentParser:
    """The ``helu-train search`` parser; ``parse_args`` puts unknown options in ``overrides`` for the trials."""
    parser = _PassThroughParser(
        prog="helu-train search",
        description="Optuna search over a fit config; other --options (--trainer.max_epochs 3) go to each trial.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--config", required=True, action="append",
        help="the YAML that `helu-train fit --config` takes; several compose in order, as for fit",
    )
    parser.add_argument("--space", help="search space YAML (default: alpha log-uniform in [1e-4, 1])")
    parser.add_argument("--study_name", default="helu-search")
    parser.add_argument(
        "--storage", help="sqlite:///f.db, journal:///f.log or postgresql://...; default output_dir/study.db"
    )
    parser.add_argument("--n_trials", type=int, default=20, help="total trials of the study, over all runs and workers")
    parser.add_argument("--timeout", type=float, help="seconds for this invocation; checked between trials")
    parser.add_argument("--output_dir", default="runs/search")
    parser.add_argument("--monitor", default="val/acc")
    parser.add_argument(
        "--direction", choices=DIRECTIONS,
        help="default: from --monitor's name (loss, error: minimize; acc, f1, mcc, pearson, ...: maximize)",
    )
    parser.add_argument(
        "--force_direction", action="store_true", help="accept a --direction that contradicts --monitor's name"
    )
    parser.add_argument("--pruner", choices=PRUNERS, default="median", help="successive_halving: fewest epochs")
    parser.add_argument("--pruner_startup_trials", type=int, default=5, help="median: trials finished before pruning")
    parser.add_argument(
        "--pruner_warmup_epochs", type=int, default=0,
        help="a trial trains at least this many epochs + 1 (successive_halving, hyperband: at least 2)",
    )
    parser.add_argument("--sampler_seed", type=int, default=0)
    parser.add_argument("--sampler_startup_trials", type=int, default=10, help="random trials before TPE models")
    parser.add_argument("--heartbeat_interval", type=int, default=60, help="RDB storages: seconds between heartbeats")
    parser.add_argument(
        "--grace_period", type=int, help="RDB storages: seconds without heartbeat before a trial is failed"
    )
    parser.add_argument(
        "--no_calibration", action="store_true", help="do not enqueue calibration.suggest_alpha's value as a baseline"
    )
    parser.add_argument("--max_retry", type=int, default=3, help="retries of a trial whose worker died")
    return parser


def options_from_args(args: argparse.Namespace) -> SearchOptions:
    """The parsed command line as SearchOptions (checked there: the direction follows the metric)."""
    same_name = {f.name for f in fields(SearchOptions)} - {"configs", "calibration"}
    values = {key: value for key, value in vars(args).items() if key in same_name}
    return SearchOptions(configs=tuple(args.config), calibration=not args.no_calibration, **values)


def run(args: argparse.Namespace) -> optuna.Study:
    """Run ``helu-train search`` on parsed arguments; a user's mistake raises SearchSetupError before any study."""
    return run_search(options_from_args(args))


def main(argv: Sequence[str] | None = None) -> optuna.Study:
    """Entry point of ``helu-train search``."""
    return run(build_parser().parse_args(argv))
