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
from helu_lightning.cli import cli
from helu_lightning.commands import COMMANDS, main
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
    # Any keyword of the activation class goes flat into the mapping, as the README documents it.
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
def test_fit_twice_in_one_directory_is_refused_then_test_the_checkpoint(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cli(["fit", "--config", str(config)])
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(config), "--model.activation.alpha", "0.02"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "helu-train fit: error: " in err and "resume it with --ckpt_path last" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before, "no -v1 files"
    last = tmp_path / "checkpoints" / "last.ckpt"
    hparams = torch.load(last, weights_only=True)["hyper_parameters"]
    assert hparams["activation"] == {"name": "helu", "alpha": 0.001}
    assert hparams["optimizer"]["init_args"]["lr"] == 0.05
    # `test --ckpt_path` rebuilds the model from the checkpoint's hyperparameters, not the config's alpha.
    tested = cli(["test", "--config", str(config), "--model.activation.alpha", "0.02", "--ckpt_path", str(last)])
    assert alphas(tested.model) == {0.001}
    assert 0.0 <= tested.trainer.callback_metrics["test/acc"].item() <= 1.0


@pytest.mark.parametrize("shape", ["build_parser+run", "main only"])
def test_extra_commands_dispatch(shape: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import argparse

    calls = []
    fake = types.ModuleType("fake_helu_search")
    if shape == "build_parser+run":
        def build_parser() -> argparse.ArgumentParser:
            parser = argparse.ArgumentParser(description="Fake search: tunes nothing.")
            parser.add_argument("--study", required=True)
            return parser
        fake.build_parser, fake.run = build_parser, lambda args: calls.append(args.study)
    else:
        fake.main = calls.append
    monkeypatch.setitem(sys.modules, "fake_helu_search", fake)
    monkeypatch.setitem(COMMANDS, "search", "fake_helu_search")
    main(["search", "--study", "x"])
    assert calls == (["x"] if shape == "build_parser+run" else [["--study", "x"]])
    assert set(COMMANDS) >= {"search", "export", "plot", "compare", "serve"}
    if shape == "build_parser+run":  # a mistyped flag fails in the command's own parser, named helu-train search
        with pytest.raises(SystemExit) as stop:
            main(["search", "--studdy", "x"])
        assert stop.value.code == 2 and "helu-train search: error:" in capsys.readouterr().err


def test_a_user_error_in_a_command_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from helu_lightning.errors import UserError

    def run(args: object) -> None:
        raise UserError("runs/x is not writable; choose another --output_dir")

    fake = types.ModuleType("fake_helu_export")
    fake.build_parser, fake.run = lambda: __import__("argparse").ArgumentParser(), run
    monkeypatch.setitem(sys.modules, "fake_helu_export", fake)
    monkeypatch.setitem(COMMANDS, "export", "fake_helu_export")
    monkeypatch.delenv("HELU_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        main(["export"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "helu-train export: error: runs/x is not writable; choose another --output_dir\n"
    monkeypatch.setenv("HELU_DEBUG", "1")
    with pytest.raises(UserError):
        main(["export"])
    monkeypatch.setitem(COMMANDS, "export", "helu_lightning.no_such_command")
    monkeypatch.delenv("HELU_DEBUG")
    with pytest.raises(SystemExit):
        main(["export"])
    assert "needs the module helu_lightning.no_such_command" in capsys.readouterr().err


BAD_VALUES = {
    "alpha -1": (["--model.activation.alpha", "-1"], "alpha must be a positive finite number"),
    "alpha nan": (["--model.activation.alpha", "nan"], "got 'nan'"),
    "alpha zero": (["--model.init_args.activation.alpha", "0"], "alpha must be a positive finite number"),
    "activation": (["--model.activation", "helo"], "unknown activation 'helo'"),
    "activation option": (["--model.activation.memory", "disk"], "disk"),
    "backbone": (["--model.backbone", "resnet"], "unknown backbone 'resnet'"),
    "label smoothing": (["--model.label_smoothing", "1.5"], "label_smoothing must be in [0, 1)"),
    "data split": (["--data.val_fraction", "1.5"], "1.5"),
    "missing data": (["--data", "helu_lightning.data.cifar.CIFAR10DataModule", "--data.data_dir", "/nonexistent/c"],
                     "/nonexistent/c"),
    "threads type": (["--threads", "abc"], "--threads takes an integer or null"),
    "epochs type": (["--trainer.max_epochs", "abc"], "--trainer.max_epochs takes an integer or null"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_stop_with_a_short_message(
    case: str, config: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HELU_DEBUG", raising=False)
    flags, message = BAD_VALUES[case]
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(config), *flags])
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert err.startswith("helu-train fit: error: ") and message in err, err
    assert "Traceback" not in err and len(err.splitlines()) <= 6, err
    assert "Does not validate against any of the Union subtypes" not in err, err


def test_dotted_activation_overrides_merge_into_the_config_mapping(config: Path) -> None:
    run = cli(["--config", str(config), "--model.activation.memory", "input"], run=False)
    assert {(round(m.alpha.item(), 6), m.memory) for m in run.model.modules() if isinstance(m, HeLU)} == {
        (0.001, "input")}
    both = cli(["--config", str(config), "--model.init_args.activation.alpha", "0.3",
                "--model.activation.memory", "input"], run=False)
    assert both.model.hparams["activation"] == {"name": "helu", "alpha": 0.3, "memory": "input"}


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
        err = capsys.readouterr().err
        assert stop.value.code == 2 and f"helu-train {command}: error: " in err and str(bad) in err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "checkpoints").exists(), "nothing trained"


def test_help_names_every_command_from_its_own_parser(capsys: pytest.CaptureFixture) -> None:
    from helu_lightning.commands import command_parser, load_command

    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for command in ("fit", "validate", "test", "predict", *COMMANDS):
        assert command in out
    for name in COMMANDS:
        parser = command_parser(name, load_command(name))
        if parser is not None:  # the first paragraph of the command's description is its help line
            line = " ".join(parser.description.split("\n\n")[0].split())
            assert line in out
            # a whole sentence in plain words: no docstring markup, not cut mid-sentence
            assert "``" not in line and line.endswith("."), line


def _raised(make: object) -> BaseException:
    try:
        make()
    except Exception as err:  # noqa: BLE001 - the test inspects whatever was raised
        return err
    raise AssertionError("nothing raised")


def test_user_message_names_the_fix_for_files_and_network_and_keeps_tracebacks_for_bugs() -> None:
    import socket
    from urllib.error import URLError

    from helu_lightning.commands import user_message

    def no_network() -> None:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as err:
            raise URLError(err) from err

    assert "there is no network here" in user_message(_raised(no_network))
    unwritable = _raised(lambda: (_ for _ in ()).throw(PermissionError(13, "Permission denied", "/srv/out")))
    assert user_message(unwritable) == "[Errno 13] Permission denied: '/srv/out'; choose a folder you can write to"
    assert user_message(_raised(lambda: torch.ones(2) @ torch.ones(3))) is None, "a bug keeps its traceback"
    assert user_message(_raised(lambda: {}["key"])) is None


def test_glue_without_a_local_model_is_a_short_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without a network, whatever this one has
    monkeypatch.delenv("HELU_DEBUG", raising=False)
    configs = Path(__file__).resolve().parents[1] / "configs" / "glue"
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(configs / "base.yaml"), "--config", str(configs / "rte.yaml"),
              "--model.init_args.pretrained", str(tmp_path / "no_model"), "--trainer.default_root_dir",
              str(tmp_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("helu-train fit: error: ") and "no_model" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("flags", "named"), [
    (["--trainer.max_epocs", "1"], "--trainer.max_epocs"),
    (["--config", "configs/no_such_config.yaml"], "no_such_config.yaml"),
    (["--trainer.max_epochs", "many"], "max_epochs"),
])
def test_a_bad_flag_key_or_config_file_is_one_short_line(
    flags: list[str], named: str, config: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # jsonargparse alone prints the whole usage (about 50 lines) before its one-line error.
    monkeypatch.delenv("HELU_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(config), *flags])
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert err.startswith("helu-train fit: error: ") and named in err, err
    assert "usage:" not in err and len(err.splitlines()) <= 7, err  # six lines at most, then "... (HELU_DEBUG=1 ...)"


def test_an_unknown_command_lists_every_command(capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELU_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        main(["comapre", "--config", "x.yaml"])
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert "'comapre'" in err and "did you mean 'compare'?" in err, err
    assert all(name in err for name in ("fit", "predict", *COMMANDS)) and len(err.splitlines()) == 1, err


def test_an_abbreviated_option_is_a_typo_not_a_prefix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """argparse would read --trainer.max_epoch as --trainer.max_epochs; a typo must stop, naming the option."""
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", "configs/offline.yaml", "--trainer.max_epoch", "1",
              "--trainer.default_root_dir", str(tmp_path)])
    assert stop.value.code == 2
    assert "unrecognized arguments: --trainer.max_epoch 1" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def test_progress_bar_shows_the_logger_version_as_a_whole_number(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    parsed = cli(["--config", str(root / "configs/offline.yaml"), "--config", str(root / "configs/monitor.yaml"),
                  f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"],
                 run=False)
    bar = parsed.trainer.progress_bar_callback
    shown = bar.get_metrics(parsed.trainer, parsed.model)
    assert shown["v_num"] == "0"  # the rich bar prints str as it is; the int 0 read "v_num: 0.000"
