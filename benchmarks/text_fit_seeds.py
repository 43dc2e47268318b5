"""The README's text number, measured: ``helu-train fit --config configs/text_offline.yaml`` once per seed at a fixed
thread count, each run's test/acc written to a JSON artifact with what produced it (package commit, torch and
transformers versions, threads, CPU model), and the mean and range over seeds printed.

    python benchmarks/text_fit_seeds.py --seeds 0 1 2 --threads 1      # ~1-2 min per run on an idle core

Each run is a fresh ``helu-train`` process (the README's own command plus ``--seed_everything``, ``--threads`` and
a CSV logger in a scratch folder), so the artifact holds exactly what a reader's command gives. The data split is
the config's (``data.init_args.seed: 0``) for every seed; the seed changes the head's initialisation, dropout and
batch order. The artifact is rewritten after every run, so an interrupted study keeps the runs it finished.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "configs/text_offline.yaml"
DEFAULT_OUTPUT = ROOT / "docs" / "results" / "text_fit" / "seeds.json"


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_commit() -> str:
    """``git rev-parse HEAD`` of this checkout, with ``-dirty`` when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def provenance(threads: int) -> dict[str, Any]:
    """What decides the digits: code, library versions, thread count and CPU."""
    import torch
    import transformers

    return {"command": f"helu-train fit --config {CONFIG} --seed_everything SEED --threads {threads}",
            "package_commit": package_commit(), "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "threads": threads, "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count()}


def test_accuracy(log_dir: Path) -> float:
    """test/acc from the run's CSVLogger ``metrics.csv``."""
    (metrics,) = log_dir.rglob("metrics.csv")
    with open(metrics, newline="") as handle:
        values = [row["test/acc"] for row in csv.DictReader(handle) if row.get("test/acc")]
    if len(values) != 1:
        raise RuntimeError(f"{metrics} holds {len(values)} test/acc values, expected 1")
    return float(values[0])


def fit(seed: int, threads: int, scratch: Path) -> dict[str, Any]:
    """One run of the README command at ``seed``; its test accuracy, wall seconds and the load it ran under."""
    folder = scratch / f"seed_{seed}"
    command = ["helu-train", "fit", "--config", CONFIG, f"--seed_everything={seed}", f"--threads={threads}",
               f"--trainer.default_root_dir={folder}", "--trainer.enable_progress_bar=false",
               "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.init_args.save_dir={folder}"]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"seed {seed}: {' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return {"seed": seed, "test_acc": test_accuracy(folder), "wall_s": round(wall, 1),
            "load_average_at_start": round(load, 1)}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, min and max test accuracy over the runs."""
    accs = [r["test_acc"] for r in runs]
    return {"n": len(accs), "mean": statistics.fmean(accs), "min": min(accs), "max": max(accs)}


def readme_claim(result: dict[str, Any]) -> str:
    """The words README.md quotes from the artifact (tests/test_readme.py holds the README to them)."""
    s = result["summary"]
    return (f"test/acc {s['mean']:.4f} mean, range {s['min']:.4f}-{s['max']:.4f} over {s['n']} seeds at "
            f"{result['threads']} thread{'s' if result['threads'] != 1 else ''} on {result['cpu_model']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {**provenance(args.threads), "runs": []}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="text_fit_seeds_") as scratch:
        for seed in args.seeds:
            run = fit(seed, args.threads, Path(scratch))
            result["runs"].append(run)
            result["summary"] = summary(result["runs"])
            args.output.write_text(json.dumps(result, indent=1) + "\n")
            print(f"seed {seed}: test/acc {run['test_acc']:.4f} ({run['wall_s']} s)", flush=True)
    print(f"{readme_claim(result)} -> {args.output}")
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
