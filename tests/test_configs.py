"""Every config in configs/: the paper settings it promises, and a fast_dev_run on fixtures in the real formats
(CIFAR pickles, Imagenette ImageFolder) or, for the offline default, on scikit-learn's digits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures import write_cifar10, write_cifar100, write_imagenette
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

from helu_lightning import HeLU
from helu_lightning.cli import cli
from helu_lightning.models import WideResNet

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PAPER = {"cifar10": (10, 100, "./data/cifar10"), "cifar100": (100, 100, "./data/cifar100"),
         "imagenette": (10, 50, "./data/imagenette2-160")}
TINY_WRN = ["--model.init_args.backbone_options", "{depth: 10, width: 1}"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_vision_configs_exist() -> None:
    assert {*PAPER, "offline"} <= {p.stem for p in CONFIGS.glob("*.yaml")}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_configs_hold_the_paper_setup(name: str) -> None:
    num_classes, epochs, data_dir = PAPER[name]
    run = cli(["--config", str(CONFIGS / f"{name}.yaml")], run=False)
    backbone = run.model.model
    assert isinstance(backbone, WideResNet) and len(backbone.blocks) == 18 and backbone.fc.in_features == 256
    helus = [m for m in backbone.modules() if isinstance(m, HeLU)]
    assert len(helus) == 37 and {round(h.alpha.item(), 6) for h in helus} == {0.001}
    assert backbone.fc.out_features == num_classes == run.model.num_classes
    optimizer = run.model.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    assert (optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]) == (0.01, 0.9)
    assert run.trainer.max_epochs == epochs and run.datamodule.batch_size == 128
    assert run.config["data"]["init_args"]["data_dir"] == data_dir
    checkpoint = run.trainer.checkpoint_callback
    assert isinstance(checkpoint, ModelCheckpoint) and checkpoint.monitor == "val/acc" and checkpoint.save_last
    assert any(isinstance(c, LearningRateMonitor) for c in run.trainer.callbacks)


def fast_dev_run(config: str, tmp_path: Path, *overrides: str):
    return cli([
        "fit", "--config", str(CONFIGS / config), "--trainer.fast_dev_run", "true",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false", *overrides,
    ])


@pytest.mark.parametrize(("config", "write"), [("cifar10.yaml", write_cifar10), ("cifar100.yaml", write_cifar100)])
def test_cifar_configs_run_on_pickle_fixtures(config: str, write, tmp_path: Path) -> None:
    write(tmp_path / "data", n_per_split=100)
    run = fast_dev_run(config, tmp_path, *TINY_WRN, "--data.init_args.data_dir", str(tmp_path / "data"),
                       "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0")
    # One training step, then (test_after_fit: true in the config) a test pass.
    assert run.trainer.global_step == 1
    assert {"test/loss", "test/acc", "test/acc_top5"} <= set(run.trainer.callback_metrics)


def test_imagenette_config_runs_on_an_imagefolder_fixture(tmp_path: Path) -> None:
    classes = [f"n0{i:07d}" for i in range(10)]
    write_imagenette(tmp_path / "imagenette", classes=classes, n_per_class=2)
    run = fast_dev_run(
        "imagenette.yaml", tmp_path, *TINY_WRN, "--data.init_args.data_dir", str(tmp_path / "imagenette"),
        "--data.init_args.image_size", "32", "--model.init_args.image_size", "32",
        "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
    )
    assert run.trainer.global_step == 1 and "test/acc" in run.trainer.callback_metrics


def test_offline_config_fast_dev_run(tmp_path: Path) -> None:
    run = fast_dev_run("offline.yaml", tmp_path)
    assert run.trainer.global_step == 1 and "test/acc" in run.trainer.callback_metrics


@pytest.mark.slow
def test_offline_config_learns_digits_in_a_few_epochs(tmp_path: Path) -> None:
    run = cli([
        "fit", "--config", str(CONFIGS / "offline.yaml"), "--trainer.max_epochs", "4",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
    ])
    # The full 30-epoch run reaches ~0.99; four epochs already clear 0.9 on the held-out digits.
    assert run.trainer.callback_metrics["test/acc"].item() > 0.9
    best = Path(run.trainer.checkpoint_callback.best_model_path)
    # helu-train puts checkpoints in <default_root_dir>/checkpoints, so a re-run finds them with `--ckpt_path last`.
    assert best.is_file() and best.parent == tmp_path / "checkpoints"
    assert (Path(run.trainer.log_dir) / "config.yaml").is_file()
    steps = run.trainer.global_step
    resumed = cli([
        "fit", "--config", str(CONFIGS / "offline.yaml"), "--trainer.max_epochs", "5", "--ckpt_path", "last",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
        "--test_after_fit", "false",
    ])
    assert resumed.trainer.ckpt_path == str(tmp_path / "checkpoints" / "last.ckpt"), "the re-run did not resume"
    assert resumed.trainer.global_step == steps * 5 // 4
