"""``plot`` and ``search`` write into an ``--output_dir`` the user may share: a file there that they did not write is
never replaced (a short error names it and the fix), while re-running the same command into its own folder works.
Each case runs ``helu-train`` in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_plots import _write_run

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "offline.yaml"
FAST = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]


def helu_train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "helu_lightning", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=600)


def _refused(done: subprocess.CompletedProcess, path: Path) -> None:
    assert done.returncode != 0, done.stdout[-2000:]
    assert str(path) in done.stderr and "did not write it" in done.stderr and "--output_dir" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("victim", ["alpha.png", "train_dead_fraction.png", "val_band_fraction.png"])
def test_plot_never_replaces_a_users_file_but_replaces_its_own(tmp_path: Path, victim: str) -> None:
    _write_run(tmp_path / "run", with_alpha=True)
    out = tmp_path / "plots"
    first = helu_train("plot", str(tmp_path / "run"), "--output_dir", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = helu_train("plot", str(tmp_path / "run"), "--output_dir", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]  # its own earlier output is replaced
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / victim).write_bytes(b"the user's own picture")
    done = helu_train("plot", str(tmp_path / "run"), "--output_dir", str(shared), cwd=tmp_path)
    _refused(done, shared / victim)
    assert (shared / victim).read_bytes() == b"the user's own picture"


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a finished two-trial search."""
    out = tmp_path_factory.mktemp("owned") / "search"
    done = helu_train("search", "--config", str(CONFIG), "--output_dir", str(out), "--n_trials", "2", *FAST,
                      cwd=out.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "best.yaml").is_file() and (out / "summary.csv").is_file()
    return out


def test_search_resumes_into_its_own_folder(searched: Path) -> None:
    done = helu_train("search", "--config", str(CONFIG), "--output_dir", str(searched), "--n_trials", "2", *FAST,
                      cwd=searched.parent)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("victim", ["best.yaml", "summary.csv", "plots/history.png"])
def test_search_never_replaces_a_users_file(tmp_path: Path, victim: str) -> None:
    out = tmp_path / "search"
    (out / victim).parent.mkdir(parents=True)
    (out / victim).write_text("the user's own file")
    done = helu_train("search", "--config", str(CONFIG), "--output_dir", str(out), "--n_trials", "1", *FAST,
                      cwd=tmp_path)
    _refused(done, out / victim)
    assert (out / victim).read_text() == "the user's own file"
    assert not (out / "trials").exists(), "the search stops before its first trial"
