"""A run folder holds files the run did not write: restored checkpoint state, a planted lock file or a planted
hpc checkpoint must never make ``helu-train fit`` delete, overwrite or hang on them. Each case runs ``helu-train``
in a fresh process on a real run of configs/offline.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from test_restored_state import fit

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run of configs/offline.yaml."""
    run = tmp_path_factory.mktemp("trust") / "run"
    done = fit(run, epochs=1)
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def _states(ckpt: dict) -> tuple[dict, dict]:
    monitored = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint"))
    last = next(v for k, v in ckpt["callbacks"].items() if k.startswith("LastCheckpoint"))
    return monitored, last


USER_FILES = {"precious.ckpt": "user data A", "notes.txt": "user data B", "epoch_notes.ckpt": "user data C",
              "last.ckpt.bak": "user data D"}


@pytest.mark.parametrize("how", ["last", "explicit"])
@pytest.mark.parametrize("victim", sorted(USER_FILES))
def test_restored_state_never_deletes_user_files_in_the_checkpoint_folder(trained: Path, tmp_path: Path, how: str,
                                                                          victim: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    folder = run / "checkpoints"
    for name, text in USER_FILES.items():
        (folder / name).write_text(text)
    ckpt = torch.load(folder / "last.ckpt", weights_only=True)
    monitored, last = _states(ckpt)
    target = str(folder / victim)
    monitored.update(best_model_path=target, kth_best_model_path=target, best_k_models={target: torch.tensor(0.0)},
                     kth_value=torch.tensor(0.0), best_model_score=torch.tensor(0.0))
    last.update(last_model_path=target, best_model_path=target, best_k_models={target: torch.tensor(0.0)})
    torch.save(ckpt, folder / "last.ckpt")
    done = fit(run, "--ckpt_path", "last" if how == "last" else str(folder / "last.ckpt"), epochs=3)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, text in USER_FILES.items():
        assert (folder / name).read_text() == text, f"{name} was deleted or changed"


@pytest.mark.parametrize("linked", ["checkpoints", "root"])
def test_a_symlinked_run_or_checkpoint_folder_is_refused(tmp_path: Path, linked: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "epoch=0-step=2.ckpt").write_text("someone else's")
    run = tmp_path / "run"
    if linked == "root":
        run.symlink_to(elsewhere, target_is_directory=True)
    else:
        run.mkdir()
        (run / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    done = fit(run, epochs=1)
    assert done.returncode != 0
    assert "is a symbolic link" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["epoch=0-step=2.ckpt"]
    assert (elsewhere / "epoch=0-step=2.ckpt").read_text() == "someone else's"


@pytest.mark.parametrize("kind", ["hardlink", "fifo", "symlink", "directory"])
def test_a_planted_lock_file_is_refused_not_written_or_waited_on(tmp_path: Path, kind: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("victim")
    lock = run / ".helu-train.lock"
    if kind == "hardlink":
        os.link(victim, lock)
    elif kind == "fifo":
        os.mkfifo(lock)
    elif kind == "symlink":
        lock.symlink_to(victim)
    else:
        lock.mkdir()
    done = fit(run, epochs=1)  # a FIFO would hang here before the fix (the subprocess timeout fails the test)
    assert done.returncode != 0
    assert ".helu-train.lock" in done.stderr and "Traceback" not in done.stderr
    assert victim.read_text() == "victim"
    assert not (run / "checkpoints").exists()


def test_a_planted_hpc_checkpoint_does_not_lift_the_second_run_refusal(trained: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / "hpc_ckpt_1.ckpt").write_bytes(b"")
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    done = fit(run, epochs=1)
    assert done.returncode != 0 and "already holds a run's checkpoints" in done.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
