"""``plot``, ``search``, ``compare`` and ``predict`` write into a folder the user may share: a file there that they
did not write is never replaced (a short error names it and the fix, before any work), while re-running the same
command into its own folder works. Ownership is a record of names and content hashes that a planted record cannot
forge. Each case runs ``helu-train`` in a fresh process."""

from __future__ import annotations

import hashlib
import json
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


# --- one rule for every command, and a record that a planted file cannot forge -------------------------------------


def _plant_record(folder: Path, *names: str, content: bytes | None = None) -> None:
    """A hand-written ownership record claiming ``names`` (with the hash of ``content``, or a made-up one)."""
    digest = hashlib.sha256(content).hexdigest() if content is not None else "0" * 64
    (folder / ".helu-train-wrote").write_text(json.dumps({"files": {name: digest for name in names}}))


def _not_replaced(done: subprocess.CompletedProcess, path: Path, text: str) -> None:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1 and str(path) in errors[0] and "replaces only its own" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert path.read_text() == text


@pytest.mark.parametrize("victim, record", [("results.md", "none"), ("summary.csv", "planted"),
                                            ("report.json", "none"), ("plots/paired.png", "planted")])
def test_compare_never_replaces_a_users_file_and_refuses_before_any_run(tmp_path: Path, victim: str,
                                                                         record: str) -> None:
    out = tmp_path / "compare"
    (out / victim).parent.mkdir(parents=True)
    (out / victim).write_text("| the user's own table |")
    if record == "planted":  # claims the file, but with a hash that is not its content's
        _plant_record((out / victim).parent, Path(victim).name)
    done = helu_train("compare", "--config", str(CONFIG), "--activations", "relu", "helu", "--seeds", "2",
                      "--output_dir", str(out), *FAST, cwd=tmp_path)
    _not_replaced(done, out / victim, "| the user's own table |")
    assert not (out / "runs").exists() and not (out / "study.db").exists(), "compare stops before any fit"


PREDICT = ["predict", "--config", str(CONFIG), "--trainer.limit_predict_batches=1", "--trainer.logger=false",
           "--trainer.enable_progress_bar=false"]


def test_predict_replaces_its_own_csv_but_never_a_users_even_with_its_header(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = helu_train(*PREDICT, "--trainer.default_root_dir", str(run), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = helu_train(*PREDICT, "--trainer.default_root_dir", str(run), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]  # its own earlier output is replaced
    mine = "index,label,probability\n0,cat,1.0\n"  # a user's file that starts like a predictions file
    for case in ("no record", "planted record", "edited after predict wrote it"):
        folder = tmp_path / case.replace(" ", "_")
        folder.mkdir()
        if case == "edited after predict wrote it":
            done = helu_train(*PREDICT, "--trainer.default_root_dir", str(folder), cwd=tmp_path)
            assert done.returncode == 0, done.stderr[-3000:]
        elif case == "planted record":
            _plant_record(folder, "predictions.csv")
        (folder / "predictions.csv").write_text(mine)
        done = helu_train(*PREDICT, "--trainer.default_root_dir", str(folder), cwd=tmp_path)
        _not_replaced(done, folder / "predictions.csv", mine)


@pytest.mark.parametrize("record", ["planted", "names only (older format)", "not JSON"])
def test_plot_is_not_fooled_by_a_planted_record(tmp_path: Path, record: str) -> None:
    _write_run(tmp_path / "run", with_alpha=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "alpha.png").write_text("the user's own picture")
    text = {"planted": None, "names only (older format)": "alpha.png\n", "not JSON": "{"}[record]
    if text is None:
        _plant_record(shared, "alpha.png", content=b"what plot wrote once")
    else:
        (shared / ".helu-train-wrote").write_text(text)
    done = helu_train("plot", str(tmp_path / "run"), "--output_dir", str(shared), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert (shared / "alpha.png").read_text() == "the user's own picture"
    assert not any(p.suffix == ".png" and p.name != "alpha.png" for p in shared.iterdir()), "refused before any work"


def test_search_is_not_fooled_by_a_planted_record(tmp_path: Path) -> None:
    out = tmp_path / "search"
    out.mkdir()
    (out / "best.yaml").write_text("the user's own file")
    _plant_record(out, "best.yaml", "summary.csv")
    done = helu_train("search", "--config", str(CONFIG), "--output_dir", str(out), "--n_trials", "1", *FAST,
                      cwd=tmp_path)
    _not_replaced(done, out / "best.yaml", "the user's own file")
    assert not (out / "trials").exists(), "the search stops before its first trial"


def _write_many(folder: str, worker: int) -> None:
    from helu_lightning.owned_files import write_owned

    for i in range(30):
        for name in ("results.md", "runs.csv"):
            write_owned(folder, name, f"worker {worker}, round {i}".encode(), "compare")


def test_workers_finishing_into_one_folder_never_leave_a_record_that_disowns_the_file(tmp_path: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    from helu_lightning.owned_files import owned

    with ProcessPoolExecutor(3) as pool:
        list(pool.map(_write_many, [str(tmp_path)] * 3, range(3)))
    assert owned(tmp_path, "results.md") and owned(tmp_path, "runs.csv")
