"""Scale-out: a two-process CPU DDP fit through ``helu-train`` (gloo, launched by Lightning), SyncBatchNorm
conversion, and the cluster launch scripts in configs/cluster/ (valid bash, and their ``helu-train`` arguments
parse)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.plugins import TorchSyncBatchNorm
from torch import nn

from helu_lightning.cli import cli
from helu_lightning.search import build_parser

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "configs" / "cluster"
OFFLINE = ROOT / "configs" / "offline.yaml"
SCRIPTS = sorted(p.name for p in CLUSTER.iterdir())


def _helu_train() -> list[str]:
    script = Path(sys.executable).parent / "helu-train"
    return [str(script)] if script.exists() else [sys.executable, "-m", "helu_lightning"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """One epoch of 4 batches on 2 CPU processes, with AlphaScheduler, ActivationMonitor and a per-rank dump."""
    out = tmp_path_factory.mktemp("ddp")
    args = [
        *_helu_train(), "fit", "--config", str(OFFLINE),
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(out), "--test_after_fit", "false",
        "--trainer.callbacks+=helu_lightning.callbacks.AlphaScheduler",
        "--trainer.callbacks.schedule", "{name: linear, start: 0.2, end: 0.02}",
        "--trainer.callbacks+=helu_lightning.callbacks.ActivationMonitor",
        "--trainer.callbacks.every_n_steps", "2", "--trainer.callbacks.window", "1",
        "--trainer.callbacks+=scale_probes.RankDump", "--trainer.callbacks.out_dir", str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(args, cwd=out, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"run-rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_ddp_ranks_train_one_model_on_different_data(ddp_run: list[dict]) -> None:
    r0, r1 = ddp_run
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    assert r0["global_step"] == r1["global_step"] == 4
    assert r0["weights"] == r1["weights"], "DDP all-reduces gradients, so both replicas end identical"
    assert r0["val"]["sum"] != r1["val"]["sum"], "the DistributedSampler gives each rank its own validation shard"


@pytest.mark.slow
def test_ddp_accuracy_is_reduced_across_ranks(ddp_run: list[dict]) -> None:
    r0, r1 = ddp_run
    for key in ("val/acc", "train/acc"):
        assert r0["metrics"][key] == r1["metrics"][key], f"{key} differs between ranks: not synced"
    correct = r0["val"]["correct"] + r1["val"]["correct"]
    seen = r0["val"]["seen"] + r1["val"]["seen"]
    assert r0["val"]["correct"] / r0["val"]["seen"] != pytest.approx(correct / seen, abs=1e-6)
    assert r0["metrics"]["val/acc"] == pytest.approx(correct / seen, abs=1e-6)


@pytest.mark.slow
def test_ddp_loss_is_reduced_across_ranks(ddp_run: list[dict]) -> None:
    r0, r1 = ddp_run
    for key in ("val/loss", "train/loss"):
        assert r0["metrics"][key] == r1["metrics"][key], f"{key} differs between ranks: not synced"


@pytest.mark.slow
def test_ddp_alpha_schedule_is_identical_on_every_rank(ddp_run: list[dict]) -> None:
    r0, r1 = ddp_run
    assert r0["alphas"] == r1["alphas"]
    per_step = [alphas[0] for alphas in r0["alphas"]]
    assert len(per_step) == 4 and all(a > b for a, b in zip(per_step, per_step[1:]))
    assert per_step[0] == pytest.approx(0.2)
    assert all(len(set(alphas)) == 1 for alphas in r0["alphas"]), "one schedule sets every HeLU module"


@pytest.mark.slow
def test_ddp_activation_monitor_sums_counts_over_ranks(ddp_run: list[dict]) -> None:
    r0, r1 = ddp_run
    assert r0["monitor"] and r0["monitor"] == r1["monitor"]
    elements = r0["val"]["elements"] + r1["val"]["elements"]
    band = (r0["val"]["band"] + r1["val"]["band"]) / elements
    mean = (r0["val"]["sum"] + r1["val"]["sum"]) / elements
    assert r0["val"]["band"] / r0["val"]["elements"] != pytest.approx(band, rel=1e-9)
    assert r0["monitor"]["monitor/val/band_fraction"] == pytest.approx(band, rel=1e-9)
    assert r0["monitor"]["monitor/val/pre_mean"] == pytest.approx(mean, rel=1e-6)


def test_sync_batchnorm_is_selectable_and_converts_every_bn_layer(tmp_path: Path) -> None:
    # PyTorch runs SyncBatchNorm under DDP on GPUs only, so on CPU this checks what Lightning does in
    # strategy.setup: the flag selects TorchSyncBatchNorm, which swaps every BatchNorm of the model.
    built = cli(["--config", str(OFFLINE), "--trainer.strategy", "ddp",
                 "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.sync_batchnorm", "true",
                 "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false"], run=False)
    layer_sync = built.trainer.strategy._layer_sync
    assert isinstance(layer_sync, TorchSyncBatchNorm)
    model = built.model
    batchnorms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert batchnorms > 0
    converted = layer_sync.apply(model)
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules()) == batchnorms
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) for m in converted.modules())


@pytest.mark.slow
def test_torchrun_script_runs_a_two_process_fit(tmp_path: Path) -> None:
    # torchrun starts the ranks here and Lightning takes them from TorchElasticEnvironment.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", NNODES="1", GPUS_PER_NODE="2", ACCELERATOR="cpu",
               MASTER_PORT=str(port), MAX_RESTARTS="0")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    args = ["bash", str(CLUSTER / "torchrun.sh"), str(OFFLINE), "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.callbacks+=scale_probes.RankDump", "--trainer.callbacks.out_dir", str(tmp_path)]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"run-rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["world_size"], r1["rank"], r0["global_step"]) == (2, 1, 2)
    assert r0["weights"] == r1["weights"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_cluster_script_is_valid_bash(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(CLUSTER / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


_SLURM_ENV = {"SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS_PER_NODE": "4", "SLURM_CPUS_PER_TASK": "8",
              "SLURM_GPUS_ON_NODE": "4", "OPTUNA_STORAGE": "postgresql://helu:secret@db:5432/optuna",
              "NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "node0", "GPUS_PER_NODE": "4"}


def _launched(script: str, tmp_path: Path) -> list[str]:
    """Run ``script`` with fake ``srun``/``torchrun`` that record their arguments; return them."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "argv.txt"
    for launcher in ("srun", "torchrun"):
        fake = bindir / launcher
        fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {shlex.quote(str(record))}\n')
        fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", **_SLURM_ENV)
    result = subprocess.run(["bash", str(CLUSTER / script), str(OFFLINE), "--trainer.max_epochs", "7"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return record.read_text().splitlines()


def _print_config(args: list[str], capsys: pytest.CaptureFixture, **kwargs) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        cli([*args, "--print_config"], **kwargs)
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("script, start, nodes", [("slurm.sbatch", ["helu-train", "fit"], 2),
                                                  ("torchrun.sh", ["-m", "helu_lightning", "fit"], 2)])
def test_fit_launch_arguments_parse(script: str, start: list[str], nodes: int, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    argv = _launched(script, tmp_path)
    i = next(k for k in range(len(argv)) if argv[k:k + len(start)] == start)
    if script == "torchrun.sh":
        assert argv[argv.index("--nnodes") + 1] == "2" and argv[argv.index("--nproc-per-node") + 1] == "4"
        assert argv[argv.index("--node-rank") + 1] == "1"
    config = _print_config(argv[i + len(start) - 1:], capsys)
    trainer = config["trainer"]
    assert (trainer["strategy"], trainer["num_nodes"], str(trainer["devices"])) == ("ddp", nodes, "4")
    assert trainer["max_epochs"] == 7, "extra arguments reach helu-train"


def test_search_launch_arguments_parse(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = _launched("search.sbatch", tmp_path)
    assert argv[:3] == ["--ntasks-per-node=1", "helu-train", "search"]
    known = build_parser().parse_args(argv[3:])
    assert known.storage == _SLURM_ENV["OPTUNA_STORAGE"] and known.config == [str(OFFLINE)]
    # Each trial builds its LightningCLI from the config plus the overrides, as search.Objective does.
    config = _print_config(["--config", *known.config, *known.overrides], capsys, run=False)
    trainer = config["trainer"]
    assert (trainer["strategy"], str(trainer["devices"]), trainer["max_epochs"]) == ("ddp_spawn", "4", 7)
    assert trainer["plugins"]["class_path"].endswith("LightningEnvironment")


def test_search_trial_takes_all_node_devices_inside_a_one_task_srun(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # search.sbatch runs one srun task per node. Left to itself Lightning reads that task's SLURM rank and task count
    # as the DDP world, so every node's trial would join one rendezvous with clashing ranks.
    for key, value in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "4", "SLURM_PROCID": "2",
                       "SLURM_LOCALID": "0", "SLURM_NODEID": "2", "SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "helu-search",
                       "SLURM_NODELIST": "node[0-3]"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    args = ["--config", str(OFFLINE), "--trainer.accelerator", "cpu",
            "--trainer.strategy", "ddp_spawn", "--trainer.devices", "4", "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path)]
    trainer = cli(args, run=False).trainer
    assert type(trainer.strategy.cluster_environment).__name__ == "SLURMEnvironment"
    assert trainer.strategy.cluster_environment.global_rank() == 2
    plugin = ["--trainer.plugins", "lightning.pytorch.plugins.environments.LightningEnvironment"]
    trainer = cli([*args, *plugin], run=False).trainer
    environment = trainer.strategy.cluster_environment
    assert type(environment).__name__ == "LightningEnvironment"
    assert (environment.global_rank(), environment.main_address, trainer.world_size) == (0, "127.0.0.1", 4)
