"""helu-train: activation from YAML and flags, clear errors, --print_config, re-runs into one directory, checkpoints,
test after fit, seeding, and the search/export/plot dispatch."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import LightningDataModule

from helu_lightning import HeLU
from helu_lightning.cli import EXTRA_COMMANDS, cli, main
from helu_lightning.data.digits import DigitsDataModule

CONFIG = {
    "seed_everything": 0,
    "trainer": {
        "max_steps": 3,
        "limit_val_batches": 1,
        "limit_test_batches": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"monitor": "val/acc", "mode": "max", "save_last": True}},
        ],
    },
    "model": {
        "class_path": "helu_lightning.tasks.vision.VisionClassifier",
        "init_args": {
            "backbone": "small_cnn",
            "backbone_options": {"width": 4},
            "num_classes": 10,
            "in_channels": 1,
            "image_size": 8,
            "activation": {"name": "helu", "alpha": 0.001},
            "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05, "momentum": 0.9}},
        },
    },
    "data": {"class_path": "helu_lightning.data.digits.DigitsDataModule", "init_args": {"batch_size": 32}},
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "trainer": {**CONFIG["trainer"], "default_root_dir": str(tmp_path)}}))
    return path


def alphas(model: torch.nn.Module) -> set[float]:
    return {round(m.alpha.item(), 6) for m in model.modules() if isinstance(m, HeLU)}


def test_activation_from_yaml_and_flags(config: Path) -> None:
    assert alphas(cli(["--config", str(config)], run=False).model) == {0.001}
    flags = cli(["--config", str(config), "--model.activation.alpha", "0.01"], run=False)
    assert alphas(flags.model) == {0.01}
    full = cli(["--config", str(config), "--model.init_args.activation.alpha", "0.2"], run=False)
    assert alphas(full.model) == {0.2}
    relu = cli(["--config", str(config), "--model.activation", "relu"], run=False)
    assert not alphas(relu.model) and any(isinstance(m, torch.nn.ReLU) for m in relu.model.modules())
    # Any keyword of the activation class goes flat into the mapping, as DESIGN.md writes it.
    flat = cli(["--config", str(config), "--model.activation", "{name: helu, alpha: 0.02, memory: input}"], run=False)
    helus = [m for m in flat.model.modules() if isinstance(m, HeLU)]
    assert helus and {(round(m.alpha.item(), 6), m.memory) for m in helus} == {(0.02, "input")}
    assert flat.model.hparams["activation"] == {"name": "helu", "alpha": 0.02, "memory": "input"}
    leaky = cli(["--config", str(config), "--model.activation", "{name: leaky_relu, negative_slope: 0.2}"], run=False)
    assert {m.negative_slope for m in leaky.model.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.2}


def test_wrong_key_names_the_key(config: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["--config", str(config), "--model.init_args.activaton.alpha", "0.01"], run=False)
    assert exit_info.value.code != 0
    assert "activaton" in capsys.readouterr().err


def test_wrong_key_in_yaml_names_the_key(config: Path, capsys: pytest.CaptureFixture) -> None:
    bad = yaml.safe_load(config.read_text())
    bad["model"]["init_args"]["label_smothing"] = 0.1
    config.write_text(yaml.safe_dump(bad))
    with pytest.raises(SystemExit):
        cli(["--config", str(config)], run=False)
    assert "label_smothing" in capsys.readouterr().err


def test_print_config_shows_the_merged_settings(config: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["fit", "--config", str(config), "--model.activation.alpha", "0.03", "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["activation"]["alpha"] == 0.03
    assert printed["test_after_fit"] is False


def test_same_seed_same_initial_weights(config: Path) -> None:
    first = cli(["--config", str(config)], run=False).model.state_dict()
    second = cli(["--config", str(config)], run=False).model.state_dict()
    other = cli(["--config", str(config), "--seed_everything", "1"], run=False).model.state_dict()
    key = "model.features.0.weight"
    torch.testing.assert_close(first[key], second[key])
    assert not torch.equal(first[key], other[key])


@pytest.mark.slow
def test_fit_twice_in_one_directory_then_test_the_checkpoint(config: Path, tmp_path: Path) -> None:
    cli(["fit", "--config", str(config)])
    again = cli(["fit", "--config", str(config), "--model.activation.alpha", "0.02", "--test_after_fit", "true"])
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["model"]["init_args"]["activation"]["alpha"] == 0.02
    assert {"test/acc", "test/loss", "test/acc_top5"} <= set(again.trainer.callback_metrics)
    # ModelCheckpoint keeps the first run's last.ckpt and versions the second one.
    last = tmp_path / "checkpoints" / "last-v1.ckpt"
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["activation"][
        "alpha"] == 0.001
    hparams = torch.load(last, weights_only=True)["hyper_parameters"]
    assert hparams["activation"] == {"name": "helu", "alpha": 0.02}
    assert hparams["optimizer"]["init_args"]["lr"] == 0.05
    # `test --ckpt_path` rebuilds the model from the checkpoint's hyperparameters, not the config's alpha.
    tested = cli(["test", "--config", str(config), "--ckpt_path", str(last)])
    assert alphas(tested.model) == {0.02}
    assert 0.0 <= tested.trainer.callback_metrics["test/acc"].item() <= 1.0


def test_extra_commands_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    fake = types.ModuleType("fake_helu_search")
    fake.main = calls.append
    monkeypatch.setitem(sys.modules, "fake_helu_search", fake)
    monkeypatch.setitem(EXTRA_COMMANDS, "search", "fake_helu_search:main")
    main(["search", "--study", "x"])
    assert calls == [["--study", "x"]]
    assert set(EXTRA_COMMANDS) >= {"search", "export", "plot"}


class DigitsWithoutTest(DigitsDataModule):
    """Digits with no test split, like a data set whose test labels are private."""

    test_dataloader = LightningDataModule.test_dataloader


def test_test_after_fit_skips_data_without_a_test_split(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_helu_data")
    module.DigitsWithoutTest = DigitsWithoutTest
    monkeypatch.setitem(sys.modules, "fake_helu_data", module)
    with pytest.warns(UserWarning, match="has no test_dataloader.*skipping the test"):
        run = cli(["fit", "--config", str(config), "--data", "fake_helu_data.DigitsWithoutTest",
                   "--trainer.max_steps", "1", "--test_after_fit", "true"])
    assert run.trainer.global_step == 1 and "test/acc" not in run.trainer.callback_metrics


class _Payload:
    """A pickled object: weights_only loading must refuse it."""


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "does not exist; pass --ckpt_path"),
        (lambda p: p.write_bytes(b"\x80\x04" + bytes(range(200))), "corrupt or truncated: torch.save"),
        (lambda p: torch.save({"weights": torch.ones(2)}, p), "not a Lightning checkpoint: it has no 'state_dict'"),
        (lambda p: torch.save({"state_dict": {}, "payload": _Payload()}, p), "--weights_only false"),
    ],
    ids=["missing", "corrupt", "foreign", "pickled-object"],
)
def test_bad_ckpt_path_stops_with_the_path_and_the_fix(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture, make, message: str
) -> None:
    bad = tmp_path / "bad.ckpt"
    if make is not None:
        make(bad)
    for command in ("fit", "test"):
        with pytest.raises(SystemExit) as stop:
            main([command, "--config", str(config), "--ckpt_path", str(bad)])
        assert "helu-train: error: " in str(stop.value.code) and str(bad) in str(stop.value.code)
        assert message in str(stop.value.code)
    assert not (tmp_path / "checkpoints").exists(), "nothing trained"


def test_help_names_the_extra_commands(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for command in ("fit", "validate", "test", "predict", *EXTRA_COMMANDS):
        assert command in out
    assert "`helu-train search`" in out and "`helu-train export`" in out and "`helu-train plot`" in out
