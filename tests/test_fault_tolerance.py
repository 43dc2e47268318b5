"""Fault tolerance of ``helu-train fit``: a real SIGKILL mid-epoch, resumed with ``--ckpt_path last``, ends with the
same weights and metrics as an uninterrupted run; SIGTERM saves a checkpoint before exit; checkpoints holding
pickled objects are refused unless the caller opts in.

The fits run configs/offline.yaml (8x8 digits) as subprocesses, four at a time, each 3 epochs of 4 batches.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helu_lightning.callbacks import RNGState
from helu_lightning.checkpoints import CheckpointError
from helu_lightning.cli import cli
from helu_lightning.tasks.vision import VisionClassifier

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300
PAUSE_STEP = 6  # epoch 1 of 0..2, after 2 of its 4 batches: mid-epoch, after the end-of-epoch-0 checkpoint


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


def _slurm_env(run_dir: Path) -> dict[str, str]:
    """A one-task SLURM job as srun describes it, with a fake ``scontrol`` that records the requeue request."""
    bindir = run_dir / "bin"
    bindir.mkdir()
    scontrol = bindir / "scontrol"
    scontrol.write_text(f'#!/usr/bin/env bash\necho "$@" > "{run_dir}/scontrol.txt"\n')
    scontrol.chmod(0o755)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
            "SLURM_NNODES": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "helu-fit", "SLURM_PROCID": "0",
            "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}


def _fit_args(run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "helu_lightning", "fit", "--config", str(ROOT / "configs/offline.yaml"),
        "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2",
        "--trainer.deterministic", "true", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(run_dir), "--test_after_fit", "false",
        # An end-of-epoch checkpoint with a fixed directory, so `--ckpt_path last` finds it in a new process.
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        "--trainer.callbacks.dirpath", str(run_dir / "ckpt"), "--trainer.callbacks.save_last", "true",
        "--trainer.callbacks+=scale_probes.RankDump", "--trainer.callbacks.out_dir", str(run_dir),
        *extra,
    ]


def _pause(run_dir: Path) -> list[str]:
    return ["--trainer.callbacks+=scale_probes.PauseAtStep", "--trainer.callbacks.step", str(PAUSE_STEP),
            "--trainer.callbacks.marker", str(run_dir / "paused.json")]


def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    # Run inside the run's own directory: paths a config gives relative to the working directory stay apart.
    return subprocess.Popen(args, cwd=log.parent, env=_env(**(env or {})), stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen, log: Path) -> int:
    try:
        return proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"helu-train did not finish in {TIMEOUT}s; log:\n{log.read_text()[-3000:]}")


def _wait_for(path: Path, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the fit never reached step {PAUSE_STEP}; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _dump(run_dir: Path) -> dict:
    return json.loads((run_dir / "run-rank0.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Fits side by side: uninterrupted, SIGKILLed, SIGTERMed, and preempted under SLURM (SIGUSR1); then the
    interrupted ones restarted (the first two with ``--ckpt_path last``, the SLURM one as its requeued job would)."""
    base = tmp_path_factory.mktemp("fault")
    dirs = {name: base / name for name in ("ref", "killed", "termed", "preempted")}
    for d in dirs.values():
        d.mkdir()
    slurm = _slurm_env(dirs["preempted"])
    extra = {
        "ref": [],
        "killed": [],
        "termed": ["--trainer.callbacks+=lightning.pytorch.callbacks.OnExceptionCheckpoint",
                   "--trainer.callbacks.dirpath", str(dirs["termed"] / "ckpt")],
        "preempted": [],
    }
    started: list[subprocess.Popen] = []
    try:
        return _interrupt_and_resume(dirs, extra, slurm, started)
    finally:
        for proc in started:  # only left running when a step above failed
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _interrupt_and_resume(dirs: dict[str, Path], extra: dict[str, list[str]], slurm: dict[str, str],
                          started: list[subprocess.Popen]) -> dict:
    procs = {name: _start(_fit_args(d, *extra[name], *([] if name == "ref" else _pause(d))), d / "fit.log",
                          slurm if name == "preempted" else None)
             for name, d in dirs.items()}
    started.extend(procs.values())
    out: dict = {"dirs": dirs}
    _wait_for(dirs["killed"] / "paused.json", procs["killed"], dirs["killed"] / "fit.log")
    out["ckpts_at_kill"] = sorted(p.name for p in (dirs["killed"] / "ckpt").iterdir())
    procs["killed"].send_signal(signal.SIGKILL)
    _wait_for(dirs["termed"] / "paused.json", procs["termed"], dirs["termed"] / "fit.log")
    procs["termed"].send_signal(signal.SIGTERM)
    # SLURM sends SIGUSR1 before the time limit: Lightning saves hpc_ckpt_1.ckpt and calls `scontrol requeue`.
    _wait_for(dirs["preempted"] / "paused.json", procs["preempted"], dirs["preempted"] / "fit.log")
    procs["preempted"].send_signal(signal.SIGUSR1)
    _wait_for(dirs["preempted"] / "scontrol.txt", procs["preempted"], dirs["preempted"] / "fit.log")
    procs["preempted"].send_signal(signal.SIGKILL)  # the time limit
    out["rc"] = {name: _finish(proc, dirs[name] / "fit.log") for name, proc in procs.items()}
    out["ckpts_after_term"] = sorted(p.name for p in (dirs["termed"] / "ckpt").iterdir())
    if (dirs["termed"] / "ckpt" / "on_exception.ckpt").exists():
        out["on_exception"] = torch.load(dirs["termed"] / "ckpt" / "on_exception.ckpt", weights_only=True)
    out["scontrol"] = (dirs["preempted"] / "scontrol.txt").read_text().split()
    out["hpc"] = torch.load(dirs["preempted"] / "hpc_ckpt_1.ckpt", weights_only=True)
    resumed = {
        "killed": _start(_fit_args(dirs["killed"], "--ckpt_path", "last"), dirs["killed"] / "resume.log"),
        "termed": _start(_fit_args(dirs["termed"], *extra["termed"], "--ckpt_path", "last"),
                         dirs["termed"] / "resume.log"),
        "preempted": _start(_fit_args(dirs["preempted"]), dirs["preempted"] / "resume.log", slurm),
    }
    started.extend(resumed.values())
    out["resume_rc"] = {name: _finish(proc, dirs[name] / "resume.log") for name, proc in resumed.items()}
    out["ckpts_after_resume"] = sorted(p.name for p in (dirs["termed"] / "ckpt").iterdir())
    return out


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(runs: dict) -> None:
    assert runs["rc"]["ref"] == 0 and runs["resume_rc"]["killed"] == 0
    assert runs["rc"]["killed"] == -signal.SIGKILL
    assert "last.ckpt" in runs["ckpts_at_kill"]
    ref, resumed = _dump(runs["dirs"]["ref"]), _dump(runs["dirs"]["killed"])
    # The resumed process trained only epochs 1 and 2 (8 batches), from the end-of-epoch-0 checkpoint ...
    assert len(resumed["alphas"]) == 8 and len(ref["alphas"]) == 12
    assert resumed["global_step"] == ref["global_step"] == 12
    # ... and still ends bit for bit where the uninterrupted run ends.
    assert resumed["weights"] == ref["weights"]
    assert resumed["metrics"] == ref["metrics"]
    assert {"val/acc", "val/loss", "train/loss"} <= set(ref["metrics"])


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_continues_mid_epoch(runs: dict) -> None:
    # Lightning turns SIGTERM into SIGTERMException at the next batch; OnExceptionCheckpoint saves before exit.
    assert runs["rc"]["termed"] == 0, "Lightning exits with SystemExit() after a SIGTERM"
    assert "on_exception.ckpt" in runs["ckpts_after_term"]
    saved = runs["on_exception"]
    assert saved["global_step"] == PAUSE_STEP and saved["epoch"] == 1
    assert "RNGState" in saved["callbacks"]
    assert saved["hyper_parameters"]["activation"] == {"name": "helu", "alpha": 0.05}
    # `--ckpt_path last` picks the newer of last.ckpt (step 4) and on_exception.ckpt (step 6): 6 batches remain.
    assert runs["resume_rc"]["termed"] == 0
    resumed = _dump(runs["dirs"]["termed"])
    assert resumed["global_step"] == 12 and len(resumed["alphas"]) == 12 - PAUSE_STEP
    # A finished fit removes its on-exception checkpoint, so a later `last` cannot pick a stale one.
    assert "on_exception.ckpt" not in runs["ckpts_after_resume"]


@pytest.mark.slow
def test_slurm_preemption_saves_requeues_and_the_requeued_job_resumes(runs: dict) -> None:
    assert runs["scontrol"] == ["requeue", "4242"]
    assert runs["hpc"]["global_step"] == PAUSE_STEP
    # The requeued job runs the same command (no --ckpt_path) and Lightning picks hpc_ckpt_1.ckpt by itself.
    assert runs["resume_rc"]["preempted"] == 0
    resumed = _dump(runs["dirs"]["preempted"])
    assert resumed["global_step"] == 12 and len(resumed["alphas"]) == 12 - PAUSE_STEP


def _draws() -> list[float]:
    return [random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(1).item()]


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    torch.save({"rng": RNGState().state_dict()}, tmp_path / "rng.ckpt")
    expected = _draws()
    _draws()  # move every generator on
    RNGState().load_state_dict(torch.load(tmp_path / "rng.ckpt", weights_only=True)["rng"])
    assert _draws() == expected


def test_rng_state_rejects_a_foreign_entry() -> None:
    with pytest.raises(KeyError, match="numpy"):
        RNGState().load_state_dict({"python": {}, "torch": torch.get_rng_state()})


class _Payload:
    """Unpickling this creates ``path``: stands in for arbitrary code run by a hostile checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _hostile_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    model = VisionClassifier(backbone="small_cnn", in_channels=1, image_size=8)
    marker = tmp_path / "payload-ran"
    ckpt = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": "2.6.6",
        "payload": _Payload(marker),
    }
    path = tmp_path / "hostile.ckpt"
    torch.save(ckpt, path)
    return path, marker


def test_checkpoint_with_pickled_code_is_refused_by_default(tmp_path: Path) -> None:
    path, marker = _hostile_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="pickled Python objects that weights_only loading refuses"):
        VisionClassifier.load_from_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        torch.load(path)
    assert not marker.exists()
    # The payload is live: an explicit opt-in (trusted files only) runs it.
    VisionClassifier.load_from_checkpoint(path, weights_only=False)
    assert marker.exists()


def test_helu_train_refuses_a_hostile_ckpt_path(tmp_path: Path) -> None:
    path, marker = _hostile_checkpoint(tmp_path)
    args = ["fit", "--config", str(ROOT / "configs/offline.yaml"), "--trainer.fast_dev_run", "true",
            "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
            "--ckpt_path", str(path)]
    with pytest.raises(CheckpointError, match="pickled Python objects .* pass --weights_only false"):
        cli(args)
    assert not marker.exists()


def test_helu_train_refuses_a_hostile_checkpoint_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lightning alone unpickles http(s) checkpoints with weights_only=False; helu-train refuses a URL for fit
    # (its hyper-parameters could not be checked before Lightning reads them) unless --trust_checkpoint is given.
    path, marker = _hostile_checkpoint(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    args = ["fit", "--config", str(ROOT / "configs/offline.yaml"), "--trainer.fast_dev_run", "true",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
            "--ckpt_path", url]
    try:
        with pytest.raises(CheckpointError, match="is a URL: fit resumes from local files only"):
            cli(args)
    finally:
        server.shutdown()
        server.server_close()
    assert not marker.exists()
