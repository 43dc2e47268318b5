r"""``helu-train compare``: fit a config once per (activation, seed) and compare the activations with paired
statistics over the seeds, INT8 deltas and plots.

    helu-train compare --config configs/fashion_mnist.yaml \
        --activations relu gelu helu:0.01 helu:0.05 helu:auto --seeds 5 --output_dir runs/compare/fmnist

Re-running the same command resumes; several shells sharing ``--storage journal:///path/compare.log`` share the
grid. Options this parser does not know (``--trainer.max_epochs 3``) go to every run's LightningCLI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from helu_lightning.compare.arms import CompareError, parse_arms
from helu_lightning.compare.evaluate import Evaluator
from helu_lightning.compare.plots import PLOT_FILES, write_plots
from helu_lightning.compare.report import (
    compared_metric,
    run_rows,
    summary_rows,
    to_csv,
    to_markdown,
    to_table,
)
from helu_lightning.compare.runner import CompareObjective, check_config, open_study, run_grid
from helu_lightning.errors import UserError
from helu_lightning.finite import finite_json
from helu_lightning.owned_files import refuse_foreign, write_owned
from helu_lightning.search import SearchSetupError
from helu_lightning.search.config import read_config
from helu_lightning.search.options import resolve_direction
from helu_lightning.search.storage import sqlite_url

__all__ = ["build_parser", "load_config", "main", "run"]

REPORT_FILES = ("runs.csv", "summary.csv", "results.md", "report.json")
RUN_COLUMNS = ["activation", "seed", "alpha", "monitor_last", "monitor_best", "epochs", "seconds_per_epoch",
               "val_dead_fraction", "val_band_fraction", "int8_fp32", "int8", "int8_delta", "int8_method", "errors"]


class _Parser(argparse.ArgumentParser):
    """Keeps options it does not know in ``args.overrides`` (for every run's LightningCLI) instead of failing."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.overrides = list(getattr(namespace, "overrides", None) or []) + list(extras)
        return namespace, []


def build_parser() -> argparse.ArgumentParser:
    """Options of ``helu-train compare``; unknown ``--section.key value`` options are kept as run overrides."""
    parser = _Parser(prog="helu-train compare", allow_abbrev=False,
                     description="Activation A/B: fit a config per (activation, seed); paired statistics vs a "
                                 "baseline, INT8 deltas, plots and a Markdown table.")
    parser.add_argument("--config", required=True, help="the YAML that `helu-train fit --config` takes")
    parser.add_argument("--activations", nargs="+", required=True,
                        help="names (relu), name:alpha (helu:0.01), helu:auto, or mappings '{name: helu, alpha: 0.02}'")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (>= 2): first_seed .. first_seed+N-1")
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--baseline", default="relu", help="activation the others are paired against ('none': no test)")
    parser.add_argument("--monitor", default="val/acc", help="validation metric each fit returns (and its curve)")
    parser.add_argument("--direction", choices=["maximize", "minimize"],
                        help="default: from --monitor's name, as search infers it (loss: minimize; acc: maximize)")
    parser.add_argument("--force_direction", action="store_true",
                        help="accept a --direction that contradicts --monitor's name")
    parser.add_argument("--metric", help="metric the statistics compare (default: test/<monitor> when tested)")
    parser.add_argument("--output_dir", default="runs/compare")
    parser.add_argument("--study_name", default="helu-compare")
    parser.add_argument("--storage", help="sqlite:///f.db, journal:///f.log or postgresql://...; "
                                          "default output_dir/study.db")
    parser.add_argument("--no_test", action="store_true", help="do not test each run's best checkpoint")
    parser.add_argument("--no_int8", action="store_true", help="do not export and quantize each run to INT8")
    parser.add_argument("--int8_batches", type=int, help="validation batches scored fp32 vs INT8 (default all)")
    parser.add_argument("--heartbeat_interval", type=int, default=60, help="RDB storages: seconds between heartbeats")
    parser.add_argument("--grace_period", type=int, help="RDB storages: seconds without heartbeat before failing")
    parser.add_argument("--max_retry", type=int, default=3, help="retries of a run whose worker died")
    return parser


def load_config(path: str) -> dict:
    """The fit config as a mapping (the search's reader); CompareError when it is missing or does not parse."""
    try:
        return read_config(path)
    except SearchSetupError as err:
        raise CompareError(str(err)) from None


def _check(args: argparse.Namespace) -> None:
    if args.seeds < 1:
        raise CompareError(f"--seeds must be at least 1, got {args.seeds}")
    if args.seeds < 2 and args.baseline != "none":
        raise CompareError(f"a paired test needs at least 2 seeds, got --seeds {args.seeds}; pass --seeds 5 "
                           "(or --baseline none for a single-seed look)")
    if args.int8_batches is not None and args.int8_batches < 1:
        raise CompareError(f"--int8_batches must be at least 1, got {args.int8_batches}")
    for option in args.overrides:
        if option.startswith("--") and option.split("=")[0] in ("--seed_everything", "--model.activation",
                                                               "--model.init_args.activation"):
            raise CompareError(f"{option.split('=')[0]} is what compare varies; give activations with "
                               "--activations and seeds with --seeds")


def run(args: argparse.Namespace, build_cli: Any = None) -> dict[str, Any]:
    """Run (or resume, or join) the comparison, then write and print its report; returns the report."""
    args.overrides = list(getattr(args, "overrides", None) or [])
    _check(args)
    direction = resolve_direction(args.monitor, args.direction, getattr(args, "force_direction", False))
    config = load_config(args.config)
    baseline = None if args.baseline == "none" else args.baseline
    arms, baseline_arm = parse_arms(args.activations, baseline)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    output_dir = Path(args.output_dir)
    refuse_foreign_outputs(output_dir)  # before any fit: a user's results.md is never replaced at the end
    if build_cli is None:
        from helu_lightning.cli import cli as build_cli
    resolved = check_config(config, arms[0], seeds[0], args.overrides, build_cli)
    storage = args.storage or sqlite_url(output_dir / "study.db")
    fingerprint = {"run_config": resolved, "monitor": args.monitor, "test": not args.no_test,
                   "int8": not args.no_int8, "int8_batches": args.int8_batches}
    study = open_study(storage, args.study_name, direction, arms, seeds, args.heartbeat_interval,
                       args.grace_period, args.max_retry, fingerprint)
    evaluate = None if args.no_test and args.no_int8 else Evaluator(not args.no_test, not args.no_int8,
                                                                    args.int8_batches)
    objective = CompareObjective(config, arms, seeds, args.overrides, output_dir, args.monitor, build_cli, evaluate)
    run_grid(study, objective, arms, seeds, args.max_retry)
    return write_report(study, output_dir, args.monitor, args.metric, baseline_arm.label if baseline_arm else None)


def write_report(study: Any, output_dir: Path, monitor: str, requested_metric: str | None,
                 baseline: str | None) -> dict[str, Any]:
    """runs.csv, summary.csv, report.json, results.md and plots/ under ``output_dir``; print both tables."""
    labels = study.user_attrs["grid"]["activation"]
    rows = run_rows(study)
    metric = compared_metric(rows, monitor, requested_metric)
    summary = summary_rows(rows, labels, baseline, metric)
    percent = metric.endswith("acc") or (metric == "monitor_last" and monitor.endswith("acc"))
    markdown = to_markdown(summary, metric, baseline, percent)
    report = {"study": study.study_name, "monitor": monitor, "metric": metric, "baseline": baseline,
              "runs": rows, "summary": summary}
    report_json = finite_json(report, str(output_dir / "report.json"), indent=1, default=str) + "\n"
    files = {"runs.csv": to_csv(rows, str(output_dir / "runs.csv")),
             "summary.csv": to_csv(summary, str(output_dir / "summary.csv")), "results.md": markdown,
             "report.json": report_json}
    refuse_foreign_outputs(output_dir)
    for name, text in files.items():
        write_owned(output_dir, name, text.encode("utf-8"), "compare")
    if rows:
        write_plots(rows, summary, labels, monitor, metric, baseline, output_dir / "plots")
    metric_columns = [metric] if metric != "monitor_last" else []
    print(to_table(rows, RUN_COLUMNS[:4] + metric_columns + RUN_COLUMNS[4:]))
    print()
    print(markdown)
    print(f"helu-train compare: {len(rows)} runs reported in {output_dir}/ (results.md, runs.csv, plots/)")
    return report


def refuse_foreign_outputs(output_dir: Path) -> None:
    """UserError when a file compare would write (its report files, its plots) is in ``output_dir`` but not one it
    recorded writing there: compare replaces only its own earlier output."""
    refuse_foreign(output_dir, REPORT_FILES, "compare")
    refuse_foreign(output_dir / "plots", PLOT_FILES, "compare")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point kept for ``python -m`` and older dispatchers: parse, then :func:`run`."""
    try:
        return run(build_parser().parse_args(argv))
    except UserError as err:
        print(f"helu-train compare: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
