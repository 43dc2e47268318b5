"""How long each `helu-train compare` study took, from its Optuna storage: wall time from the first run's start to
the last run's end, the number of finished runs, the summed run time (over 1 worker: about the wall time; over 2
workers: up to twice it) and the mean per run.

    python benchmarks/study_times.py runs/compare/depth_fashion_mnist_d8 runs/compare/relufication ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from helu_lightning.compare.snapshot import read_study
from helu_lightning.errors import UserError


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def study_time(folder: Path, study_name: str = "helu-compare") -> dict[str, float]:
    """Runs, wall and summed seconds of the completed runs of ``folder``'s study (read from a copy of study.db)."""
    with read_study(folder, study_name) as study:
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    done = [t for t in complete if t.datetime_start is not None and t.datetime_complete is not None]
    if len(done) < len(complete):
        print(f"study_times.py: {len(complete) - len(done)} completed runs of {folder} have no start or end time "
              "and are left out", file=sys.stderr)
    if not done:
        return {"runs": 0, "wall": 0.0, "summed": 0.0}
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    summed = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    return {"runs": len(done), "wall": (end - start).total_seconds(), "summed": summed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="compare --output_dir folders")
    parser.add_argument("--study_name", default="helu-compare",
                        help="the Optuna study in the folder's study.db (compare's default: helu-compare)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        rows = [(folder, study_time(folder, args.study_name)) for folder in args.folders]
    except UserError as err:
        raise SystemExit(f"study_times.py: {err}") from None
    print("| study | runs | wall | summed run time | per run |\n|---|---|---|---|---|")
    for folder, times in rows:
        per_run = f"{times['summed'] / times['runs']:.0f} s" if times["runs"] else "-"
        print(f"| {folder.name} | {times['runs']} | {_minutes(times['wall'])} | {_minutes(times['summed'])} | "
              f"{per_run} |")


if __name__ == "__main__":
    main()
