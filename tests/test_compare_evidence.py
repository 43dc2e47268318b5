"""benchmarks/compare_evidence.sh, without running a study: its syntax, that every name is checked before any study
starts (a typo after a 2-hour study used to end the run only after it), and that depth_tables stops on a study that
has not finished."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare_evidence.sh"


def _run(cwd: Path, *names: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["bash", str(SCRIPT), *names], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


@pytest.mark.parametrize("names", [("depth_tables", "depth_digitz"), ("depth_sweep",), ("is_known",),
                                   ("depth_tables fashion_mnist",), ("",)])
def test_every_name_is_checked_before_anything_runs(tmp_path: Path, names: tuple[str, ...]) -> None:
    done = _run(tmp_path, *names)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("unknown study '") and "known: fashion_mnist digits_high_lr" in done.stderr
    assert "depth_tables" in done.stderr.splitlines()[0] and len(done.stderr.splitlines()) == 1


def test_depth_tables_stops_in_one_line_on_an_unfinished_study(tmp_path: Path) -> None:
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    folders = re.findall(r'=\$r/(\w+)"', SCRIPT.read_text())
    assert len(folders) == 11
    for name in folders:
        runs = 3 if name == "depth_fashion_mnist_he_d12" else 5  # one arm still running there
        folder = tmp_path / "runs" / "compare" / name
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps({"metric": "test/acc", "baseline": "relu", "summary": [
            {"activation": "relu", "runs": 5, "mean": 0.5, "std": 0.1},
            {"activation": "gelu", "runs": runs, "mean": 0.6, "std": 0.1, "diff": 0.1}]}))
    done = _run(tmp_path, "depth_tables")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == ("sweep_table.py: runs/compare/depth_fashion_mnist_he_d12 is unfinished or lost "
                                   "runs: gelu has 3 of 5; let helu-train compare finish there (rerun it to complete "
                                   "the grid), or pass --partial to tabulate it with those cells marked (n=runs)")
    (tmp_path / "runs" / "compare" / "depth_fashion_mnist_he_d12" / "report.json").unlink()
    done = _run(tmp_path, "depth_tables")
    assert done.returncode == 1 and "depth_fashion_mnist_he_d12/report.json does not exist" in done.stderr


def test_readme_depth_tables_are_the_committed_reports() -> None:
    # The README's sweep tables are printed, not typed: regenerate them from docs/results/*/report.json.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RESULTS": "docs/results",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(SCRIPT), "depth_tables"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    tables = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(tables) == 3 * 12  # three tables of a header and 11 studies
    readme = (ROOT / "README.md").read_text().splitlines()
    missing = [line for line in tables if line not in readme]
    assert not missing, f"README rows that differ from the committed reports: {missing}"
