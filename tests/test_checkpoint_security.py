"""A checkpoint is data, never code: hostile import paths at every depth of its hyper-parameters are refused by
every command that reads a checkpoint (export, validate, test, predict, fit --ckpt_path, load_from_checkpoint),
before anything is imported or run; legitimate checkpoints of every shipped config still load."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from helu_lightning.checkpoints import CheckpointError, check_trusted, read_checkpoint, untrusted_import_paths
from helu_lightning.cli import cli

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ROOT / "configs" / "offline.yaml"
FAST = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.limit_predict_batches", "1", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false"]

# Harmless standard-library modules nothing here imports: a payload that names one shows up in sys.modules.
IMPORT_PROBES = ("tabnanny", "pyclbr", "mailcap", "sndhdr", "imghdr", "netrc", "nntplib")


def _shell(marker: Path) -> dict[str, Any]:
    return {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}}


def _payloads(markers: Path) -> dict[str, tuple[str, list[str], Any]]:
    """name -> (checkpoint section, key path, hostile value): shell commands (marker files) and imports."""
    return {
        "optimizer": ("hyper_parameters", ["optimizer"], _shell(markers / "optimizer")),
        "lr_scheduler": ("hyper_parameters", ["lr_scheduler"], _shell(markers / "lr_scheduler")),
        "backbone_options": ("hyper_parameters", ["backbone_options", "block"], _shell(markers / "backbone_options")),
        "list_item": ("hyper_parameters", ["backbone_options", "stages"], [1, _shell(markers / "list_item")]),
        "activation": ("hyper_parameters", ["activation", "extra"], _shell(markers / "activation")),
        "datamodule": ("datamodule_hyper_parameters", ["seed"], _shell(markers / "datamodule")),
        "optimizer_string": ("hyper_parameters", ["optimizer"], "tabnanny.check"),
        "task_class_path": ("hyper_parameters", ["_class_path"], "pyclbr.Class"),
        "instantiator": ("hyper_parameters", ["_instantiator"], "mailcap.getcaps"),
        "init_args": ("hyper_parameters", ["optimizer", "init_args", "lr"], {"class_path": "sndhdr.what"}),
        "datamodule_class_path": ("datamodule_hyper_parameters", ["_class_path"], "imghdr.what"),
        "dict_kwargs": ("hyper_parameters", ["backbone_options", "norm"],
                        {"class_path": "torch.nn.BatchNorm2d", "dict_kwargs": {"x": "nntplib.NNTP"}}),
        # jsonargparse parses a string as YAML, or reads the config file it names.
        "yaml_string": ("hyper_parameters", ["optimizer"], json.dumps(_shell(markers / "yaml_string"))),
        "config_file": ("hyper_parameters", ["backbone_options", "x"], str(markers.parent / "evil.yaml")),
    }


def _set(ckpt: dict, section: str, keys: list[str], value: Any) -> None:
    node = ckpt[section]
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


@pytest.fixture(scope="module")
def offline_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint of configs/offline.yaml (digits, small CNN), written by helu-train fit."""
    root = tmp_path_factory.mktemp("offline")
    cli(["fit", "--config", str(OFFLINE), "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(root), *FAST])
    return root / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def hostile(offline_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One hostile variant of the real checkpoint per payload; returns the folder and name -> expected key."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "markers").mkdir()
    (root / "evil.yaml").write_text(yaml.safe_dump(_shell(root / "markers" / "config_file")))
    clean = torch.load(offline_ckpt, weights_only=True)
    keys = {}
    for name, (section, path, value) in _payloads(root / "markers").items():
        ckpt = copy.deepcopy(clean)
        _set(ckpt, section, path, value)
        torch.save(ckpt, root / f"{name}.ckpt")
        torch.load(root / f"{name}.ckpt", weights_only=True)  # plain data: PyTorch's own check passes it
        keys[name] = f"{section}.{path[0]}"
    return root, keys


# Runs each hostile checkpoint through one entry point in a fresh interpreter; prints what happened per payload.
ATTACK = """
import contextlib, io, json, sys
from pathlib import Path
entry, root, config, probes = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
from helu_lightning.commands import main
from helu_lightning.tasks.vision import VisionClassifier
from helu_lightning.data.digits import DigitsDataModule
assert not [p for p in probes if p in sys.modules], "a probe module is imported before the attack"
fast = ["--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1", "--trainer.limit_predict_batches",
        "1", "--trainer.limit_train_batches", "1", "--trainer.enable_progress_bar", "false"]
results = {}
for path in sorted(root.glob("*.ckpt")):
    run_dir = root / "runs" / entry / path.stem
    calls = {
        "export": lambda: main(["export", "--ckpt_path", str(path), "--output_dir", str(run_dir / "out")]),
        "fit": lambda: main(["fit", "--config", config, "--ckpt_path", str(path), "--trainer.max_epochs", "3",
                             "--trainer.default_root_dir", str(run_dir), *fast]),
        "load_task": lambda: VisionClassifier.load_from_checkpoint(path),
        "load_data": lambda: DigitsDataModule.load_from_checkpoint(path),
    }
    call = calls.get(entry) or (lambda: main([entry, "--config", config, "--ckpt_path", str(path),
                                               "--trainer.default_root_dir", str(run_dir), *fast]))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            call()
            message = "no error"
        except SystemExit as stop:
            message = f"exit {stop.code}: {stderr.getvalue()}"
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
    results[path.stem] = {"message": message, "imported": [p for p in probes if p in sys.modules]}
print(json.dumps(results))
"""


@pytest.mark.parametrize("entry", ["export", "validate", "test", "predict", "fit", "load_task", "load_data"])
def test_hostile_checkpoints_run_and_import_nothing(hostile: tuple[Path, dict[str, str]], entry: str) -> None:
    root, keys = hostile
    done = subprocess.run([sys.executable, "-c", ATTACK, entry, str(root), str(OFFLINE), ",".join(IMPORT_PROBES)],
                          capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(results) == sorted(keys)
    assert sorted(p.name for p in (root / "markers").iterdir()) == [], "a payload ran a shell command"
    for name, result in results.items():
        assert result["imported"] == [], f"{name}: {result}"
        assert "trust_checkpoint" in result["message"] and keys[name] in result["message"], f"{name}: {result}"
    assert not list((root / "runs" / entry).rglob("*.ckpt")) and not list((root / "runs").rglob("manifest.json"))


def test_trusting_a_file_is_explicit(hostile: tuple[Path, dict[str, str]]) -> None:
    root, _ = hostile
    with pytest.raises(CheckpointError, match=r"'tabnanny.check' at hyper_parameters.optimizer.*--trust_checkpoint"):
        read_checkpoint(root / "optimizer_string.ckpt", unsafe_flag="--trust_checkpoint")
    ckpt = read_checkpoint(root / "optimizer_string.ckpt", trusted=True)
    assert ckpt["hyper_parameters"]["optimizer"] == "tabnanny.check"
    assert "tabnanny" not in sys.modules


def test_allow_list_admits_only_named_classes() -> None:
    allowed = {"hyper_parameters": {
        "_class_path": "helu_lightning.tasks.vision.VisionClassifier",
        "_instantiator": "lightning.pytorch.cli.instantiate_module",
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.1}},
        "lr_scheduler": {"class_path": "torch.optim.lr_scheduler.OneCycleLR", "init_args": {"max_lr": 0.1}},
        "activation": {"name": "helu", "alpha": 0.05}, "act": "torch.nn.GELU", "file": "weights.v2",
    }}
    assert untrusted_import_paths(allowed) == []
    refused = ["helu_lightning.io.atomic_write_bytes", "helu_lightning.cli.main", "torch.load",
               "torch.optim.Optimizer.zero_grad", "helu_lightning.activations._private", "torch.hub.load",
               "builtins.eval", "lightning.pytorch.cli.LightningCLI", "importlib.import_module",
               "torch.nn.functional.relu"]
    found = untrusted_import_paths({"hyper_parameters": {"optimizer": [{"class_path": p} for p in refused]}})
    assert [path for _, path in found] == refused
    with pytest.raises(CheckpointError, match=r"hyper_parameters.optimizer\[0\].class_path .*and 9 more"):
        check_trusted({"hyper_parameters": {"optimizer": [{"class_path": p} for p in refused]}}, "x.ckpt", "--flag")


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_pass_the_allow_list(config: str) -> None:
    """What LightningCLI stores in a checkpoint for each config (its model and data sections, and the callbacks)
    names only allowed classes."""
    loaded = yaml.safe_load((ROOT / "configs" / config).read_text()) or {}
    sections = {}
    for key in ("model", "data"):
        if isinstance(loaded.get(key), dict):
            part = loaded[key]
            sections[f"{key}_hyper_parameters"] = {"_class_path": part["class_path"], **part.get("init_args", {})}
    trainer = loaded.get("trainer") or {}
    sections["hparams"] = {"callbacks": trainer.get("callbacks") or trainer.get("callbacks+") or []}
    assert untrusted_import_paths({"hyper_parameters": sections}) == []


def test_real_checkpoint_loads_everywhere(offline_ckpt: Path, tmp_path: Path) -> None:
    from helu_lightning.data.digits import DigitsDataModule
    from helu_lightning.export import export_checkpoint
    from helu_lightning.tasks.vision import VisionClassifier

    task = VisionClassifier.load_from_checkpoint(offline_ckpt, strict=True)
    assert isinstance(task.configure_optimizers()["optimizer"], torch.optim.SGD) and task.in_channels == 1
    assert DigitsDataModule.load_from_checkpoint(offline_ckpt).batch_size == 64
    run = cli(["validate", "--config", str(OFFLINE), "--ckpt_path", str(offline_ckpt),
               "--trainer.default_root_dir", str(tmp_path), *FAST[2:4], *FAST[8:10]])
    assert "val/acc" in run.trainer.callback_metrics
    manifest = export_checkpoint(offline_ckpt, tmp_path / "export", formats="onnx")
    assert manifest["source"]["task"] == "helu_lightning.tasks.vision.VisionClassifier"


def test_checker_refuses_what_it_cannot_walk(tmp_path: Path) -> None:
    """A YAML alias bomb or a config file that names itself is refused quickly, not walked forever."""
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdef", "bcdefg")]
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"x: {loop}\n")
    for value in ("\n".join(levels), str(loop)):
        found = untrusted_import_paths({"hyper_parameters": {"x": value}})
        assert found and found[0][1] == "<too large or too deeply nested to check>"


def test_callback_paths_may_not_climb_out_of_their_folder(offline_ckpt: Path, tmp_path: Path) -> None:
    """ModelCheckpoint deletes old top-k files under its folder, compared lexically: ``dir/../x`` would pass. Such a
    restored path is dropped with a warning, and the file it names survives the rotation."""
    ckpt = torch.load(offline_ckpt, weights_only=True)
    # The monitored ModelCheckpoint (helu-train adds an unmonitored one beside it that keeps last.ckpt current).
    (key, state), = [(k, v) for k, v in ckpt["callbacks"].items() if "ModelCheckpoint" in k and "val/acc" in k]
    assert read_checkpoint(offline_ckpt) and Path(state["best_model_path"]).is_file()
    folder = tmp_path / "run" / "checkpoints"
    (tmp_path / "important.txt").write_text("keep")
    climb = f"{folder}/../../important.txt"
    state.update(dirpath=str(folder), best_k_models={climb: torch.tensor(-1.0)}, kth_best_model_path=climb,
                 kth_value=torch.tensor(-1.0))
    torch.save(ckpt, tmp_path / "climb.ckpt")
    with pytest.warns(UserWarning, match=r"kth_best_model_path='.*/\.\./\.\./important.txt'"):
        cli(["fit", "--config", str(OFFLINE), "--ckpt_path", str(tmp_path / "climb.ckpt"), "--trainer.max_epochs", "2",
             "--trainer.default_root_dir", str(tmp_path / "run"), *FAST])
    assert (tmp_path / "important.txt").read_text() == "keep"


@pytest.mark.parametrize("text", ["- tabnanny.check", "? tabnanny.check", "  - {class_path: tabnanny.Whitespace}"])
def test_strings_that_yaml_reads_as_lists_or_mappings_are_walked(text: str) -> None:
    # jsonargparse parses any string as YAML; "- a.b" and "? a.b" hold none of the characters "{[:" or a newline.
    found = untrusted_import_paths({"hyper_parameters": {"lr_scheduler": {"init_args": {"schedulers": text}}}})
    assert found and "tabnanny" in str(found[0][1])


def test_hparams_file_with_python_tags_is_refused(offline_ckpt: Path, tmp_path: Path) -> None:
    # Lightning reads hparams_file with yaml.full_load: "!!python/name:os.system" becomes the function itself.
    from helu_lightning.tasks.vision import VisionClassifier

    hparams = yaml.safe_load(yaml.safe_dump(dict(torch.load(offline_ckpt, weights_only=True)["hyper_parameters"])))
    text = yaml.safe_dump(hparams).replace("label_smoothing: 0.0", "label_smoothing: !!python/name:os.system")
    assert "!!python/name:os.system" in text
    (tmp_path / "hparams.yaml").write_text(text)
    with pytest.raises(CheckpointError, match="not plain YAML"):
        VisionClassifier.load_from_checkpoint(offline_ckpt, hparams_file=tmp_path / "hparams.yaml")
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(hparams))
    VisionClassifier.load_from_checkpoint(offline_ckpt, hparams_file=tmp_path / "plain.yaml")


@pytest.mark.parametrize("fn", ["tabnanny:check", " tabnanny.check ", "os:system"])
def test_colon_and_padded_import_paths_are_refused(fn: str) -> None:
    # AlphaScheduler's callable schedule imports "module:attr" (and strips nothing, but jsonargparse may).
    schedule = {"class_path": "helu_lightning.callbacks.AlphaScheduler",
                "init_args": {"schedule": {"name": "callable", "fn": fn}}}
    found = untrusted_import_paths({"hyper_parameters": {"backbone_options": {"callback": schedule}}})
    assert [value for _, value in found] == [fn]


def test_fit_refuses_to_resume_from_a_url_it_cannot_check(tmp_path: Path) -> None:
    # Resuming restores ModelCheckpoint's top-k paths (what a later rotation deletes); a URL is never checked first.
    with pytest.raises(CheckpointError, match="is a URL: fit resumes from local files only"):
        cli(["fit", "--config", str(OFFLINE), "--ckpt_path", "https://example.invalid/last.ckpt",
             "--trainer.default_root_dir", str(tmp_path), *FAST])
