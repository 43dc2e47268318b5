"""A command parses a checkpoint file once: counted in real `helu-train` processes (every ``torch.load`` call is
counted, by file), and the one parse still gives the same model, checks and refusals as before."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helu_lightning.checkpoints import CheckpointError, copy_containers, forget_parsed_checkpoint, read_checkpoint
from helu_lightning.tasks.vision import VisionClassifier

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.enable_progress_bar", "false"]
# helu-train's own entry point, with torch.load counting its calls per file (a file object counts as its name).
COUNTING = """
import atexit, collections, json, sys, torch
counts = collections.Counter()
load = torch.load
def counting(source, *args, **kwargs):
    counts[str(getattr(source, "name", "<bytes>") if hasattr(source, "read") else source)] += 1
    return load(source, *args, **kwargs)
torch.load = counting
atexit.register(lambda out=sys.argv.pop(1): open(out, "w").write(json.dumps(counts)))
sys.argv[0] = "helu-train"
from helu_lightning.commands import main
main()
"""


def _counted(tmp_path: Path, *args: object) -> dict[str, int]:
    out = tmp_path / "loads.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", COUNTING, str(out), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/offline.yaml for one short epoch."""
    root = tmp_path_factory.mktemp("reads") / "run"
    _counted(root.parent, "fit", "--config", "configs/offline.yaml", "--trainer.max_epochs", "1",
             "--trainer.default_root_dir", root, "--test_after_fit", "false", *FAST)
    return root


@pytest.mark.slow
def test_resume_from_last_parses_last_ckpt_once(run: Path, tmp_path: Path) -> None:
    resumed = shutil.copytree(run, tmp_path / "run")
    loads = _counted(tmp_path, "fit", "--config", "configs/offline.yaml", "--trainer.max_epochs", "2",
                     "--trainer.default_root_dir", resumed, "--ckpt_path", "last", "--test_after_fit", "false", *FAST)
    assert loads == {str(resumed / "checkpoints" / "last.ckpt"): 1}


@pytest.mark.slow
def test_resume_then_test_parses_each_file_once(run: Path, tmp_path: Path) -> None:
    last = run / "checkpoints" / "last.ckpt"
    target = tmp_path / "run"
    loads = _counted(tmp_path, "fit", "--config", "configs/offline.yaml", "--trainer.max_epochs", "2",
                     "--trainer.default_root_dir", target, "--ckpt_path", last, *FAST)
    tested = {name: n for name, n in loads.items() if name != str(last)}
    assert loads[str(last)] == 1 and len(tested) == 1 and set(tested.values()) == {1}, loads


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "test", "predict"])
def test_export_test_and_predict_parse_the_checkpoint_once(command: str, run: Path, tmp_path: Path) -> None:
    last = run / "checkpoints" / "last.ckpt"
    if command == "export":
        args = ["export", "--ckpt_path", last, "--output_dir", tmp_path / "export", "--format", "onnx"]
    else:
        args = [command, "--config", "configs/offline.yaml", "--ckpt_path", last, "--trainer.default_root_dir",
                tmp_path / "out", *FAST]
    assert sum(_counted(tmp_path, *args).values()) == 1


def test_a_kept_parse_is_reused_only_while_the_file_is_unchanged(run: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    calls = []
    load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a[0]) or load(*a, **k))
    forget_parsed_checkpoint()
    first = read_checkpoint(copy)
    first["state_dict"].clear()  # a caller's changes stay its own
    second = read_checkpoint(copy)
    assert len(calls) == 1 and second["state_dict"], "an unchanged file is parsed once"
    os.utime(copy, ns=(0, 0))
    read_checkpoint(copy)
    assert len(calls) == 2, "a changed file is parsed again"
    read_checkpoint(copy, weights_only=False, trusted=True)
    read_checkpoint(copy)
    assert len(calls) == 2, "a pickle-free parse serves a trusting caller too"
    forget_parsed_checkpoint()
    read_checkpoint(copy, weights_only=False, trusted=True)
    read_checkpoint(copy)
    assert len(calls) == 4, "a trusted (pickle-allowing) parse never serves a weights_only caller"


def test_a_kept_parse_is_still_checked_for_each_caller(tmp_path: Path) -> None:
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "os.system"}}, path)
    forget_parsed_checkpoint()
    assert read_checkpoint(path, trusted=True)["hyper_parameters"]["_class_path"] == "os.system"
    with pytest.raises(CheckpointError, match="os.system"):
        read_checkpoint(path)


def test_copy_containers_shares_tensors_and_keeps_state_dict_metadata() -> None:
    state = VisionClassifier(backbone="small_cnn", num_classes=10, in_channels=1, image_size=8).state_dict()
    tensor = next(iter(state.values()))
    copied = copy_containers({"state_dict": state, "list": [{"a": 1}]})
    assert copied["state_dict"] is not state and type(copied["state_dict"]) is type(state)
    assert copied["state_dict"]._metadata == state._metadata
    assert next(iter(copied["state_dict"].values())) is tensor


@pytest.mark.parametrize("source", ["path", "file object"])
def test_load_from_checkpoint_without_a_second_parse_gives_the_same_model(run: Path, source: str) -> None:
    last = run / "checkpoints" / "last.ckpt"
    forget_parsed_checkpoint()
    with open(last, "rb") as handle:
        task = VisionClassifier.load_from_checkpoint(handle if source == "file object" else last)
    expected = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    loaded = task.state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert task.hparams["backbone"] == "small_cnn"
    with pytest.raises(CheckpointError, match=r"\.csv, \.yml or \.yaml"):
        VisionClassifier.load_from_checkpoint(last, hparams_file=str(last))
