"""Export never deletes or overwrites what it did not write: --overwrite replaces only a previous export, the
output folder never holds the source checkpoint, links and files are refused before any work, and a failure or a
kill mid-export leaves no partial export. Bad flags and files are short errors naming the value and the fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning
import pytest
import torch

from helu_lightning.errors import UserError
from helu_lightning.export import CheckpointError, ExportOutputError, export_checkpoint, main
from helu_lightning.tasks.vision import VisionClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


def _checkpoint(path: Path) -> Path:
    task = VisionClassifier(backbone="small_cnn", in_channels=1, image_size=8, backbone_options={"width": 4})
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "epoch": 0,
                "global_step": 0, "pytorch-lightning_version": lightning.__version__}, path)
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_overwrite_never_touches_a_folder_holding_the_checkpoint(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / "checkpoints").mkdir(parents=True)
    ckpt = _checkpoint(runs / "checkpoints" / "last.ckpt")
    (runs / "checkpoints" / "notes.txt").write_text("mine")
    before = _tree(tmp_path)
    for out in (runs / "checkpoints", runs, tmp_path, runs / "checkpoints" / ".." / "checkpoints"):
        with pytest.raises(ExportOutputError, match="contains the checkpoint"):
            export_checkpoint(ckpt, out, formats="safetensors", overwrite=True)
    assert _tree(tmp_path) == before


def test_overwrite_replaces_only_a_previous_export(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "model.ckpt")
    out = tmp_path / "exported"
    export_checkpoint(ckpt, out, formats="safetensors")
    first = json.loads((out / "manifest.json").read_text())["created"]
    manifest = export_checkpoint(ckpt, out, formats="onnx", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx"]
    assert manifest["exporter"] == "helu_lightning.export" and manifest["created"] >= first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported", "model.ckpt"], "no .old or .tmp left"

    (out / "my_results.csv").write_text("keep me")
    with pytest.raises(ExportOutputError, match=r"did not write \(my_results.csv\)"):
        export_checkpoint(ckpt, out, formats="safetensors", overwrite=True)
    assert (out / "my_results.csv").read_text() == "keep me" and (out / "model.onnx").is_file()

    plain = tmp_path / "photos"
    plain.mkdir()
    (plain / "cat.jpg").write_bytes(b"cat")
    with pytest.raises(ExportOutputError, match="not a helu-train export"):
        export_checkpoint(ckpt, plain, formats="safetensors", overwrite=True)
    assert _tree(plain) == {"cat.jpg": b"cat"}


@pytest.mark.parametrize("kind", ["file", "symlink", "dangling"])
def test_files_and_links_are_refused_before_any_work(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("not an export")
    else:
        if kind == "symlink":
            target.mkdir()
        out.symlink_to(target)
    missing = tmp_path / "missing.ckpt"  # never read: the output is refused first
    with pytest.raises(ExportOutputError, match="is a file" if kind == "file" else "symbolic link"):
        export_checkpoint(missing, out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"out", *(["target"] if kind == "symlink" else [])})
    if kind == "file":
        assert out.read_text() == "not an export"
    else:
        assert out.is_symlink() and (kind == "dangling" or list(target.iterdir()) == [])


def test_unwritable_output_is_a_short_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = _checkpoint(tmp_path / "model.ckpt")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ExportOutputError, match="a_file is not a folder"):
        export_checkpoint(ckpt, tmp_path / "a_file" / "out")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ExportOutputError, match="gone is a dangling symbolic link"):
        export_checkpoint(ckpt, tmp_path / "gone" / "sub" / "out")
    assert not (tmp_path / "nowhere").exists()
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ExportOutputError, match="permission denied"):
            export_checkpoint(ckpt, locked / "out")
    with pytest.raises(SystemExit) as stop:
        main(["--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "a_file" / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("helu-train export: error: --output_dir") and "Traceback" not in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--max_batches", "0"], "--max_batches must be a positive number of batches, got 0"),
    (["--format", "onnx,tflite"], "unknown export format(s) ['tflite']"),
    (["--format", ","], "unknown export format(s)"),
    (["--format", "hf"], "format 'hf' needs a Hugging Face model"),
])
def test_bad_flags_are_short_errors(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str],
                                    message: str) -> None:
    ckpt = _checkpoint(tmp_path / "model.ckpt")
    with pytest.raises(SystemExit) as stop:
        main(["--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "out"), *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_errors_are_user_errors(tmp_path: Path) -> None:
    assert issubclass(CheckpointError, UserError) and issubclass(ExportOutputError, UserError)
    (tmp_path / "foreign.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="foreign.ckpt is corrupt or truncated.*re-copy it"):
        export_checkpoint(tmp_path / "foreign.ckpt", tmp_path / "out")


# Exports with a writer that stalls after writing a file, so the test can kill the process mid-export.
STALL = """
import sys, time
from pathlib import Path
import helu_lightning.export.writers as writers
def stalled(job, folder):
    (folder / "model.partial").write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(120)
writers.WRITERS["safetensors"] = stalled
from helu_lightning.export import main
main(["--ckpt_path", sys.argv[1], "--output_dir", sys.argv[2], "--format", "safetensors", *sys.argv[3:]])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_kill_mid_export_leaves_no_partial_export(tmp_path: Path, sig: int, overwrite: bool) -> None:
    ckpt = _checkpoint(tmp_path / "model.ckpt")
    out = tmp_path / "exported"
    if overwrite:
        export_checkpoint(ckpt, out, formats="onnx")
    before = _tree(out) if overwrite else None
    proc = subprocess.Popen([sys.executable, "-c", STALL, str(ckpt), str(out), *(["--overwrite"] * overwrite)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing", proc.stderr.read()[-2000:]
    proc.send_signal(sig)
    proc.wait(timeout=60)
    time.sleep(0.1)
    assert (_tree(out) if overwrite else out.exists()) == (before if overwrite else False)
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert leftovers == [] if sig == signal.SIGTERM else all(name.endswith(".tmp") for name in leftovers)
