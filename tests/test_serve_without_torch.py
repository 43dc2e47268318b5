"""`helu-train serve` runs on onnxruntime alone: the command, its server and its workers never import torch or
Lightning (the package face imports lazily), so a worker costs onnxruntime's memory, not torch's."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_client import descendants, post, running_server

ROOT = Path(__file__).resolve().parents[1]
# Packages that raise on import: put first on PYTHONPATH, they stand in for torch and Lightning in every process.
BLOCKED = ("torch", "lightning", "pytorch_lightning", "torchvision")


def _blocker(folder: Path) -> Path:
    for name in BLOCKED:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} was imported by the serving path')\n")
    return folder


def _python_path(*first: Path) -> str:
    return os.pathsep.join([*map(str, first), str(ROOT), os.environ.get("PYTHONPATH", "")])


def test_the_package_face_imports_no_torch_until_a_name_is_used() -> None:
    code = ("import sys, helu_lightning, helu_lightning.commands, helu_lightning.serve, helu_lightning.serve.api\n"
            "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))\n"
            "helu_lightning.HeLU\n"
            "print('torch' in sys.modules, sorted(set(helu_lightning.__all__) - set(dir(helu_lightning))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": _python_path()})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["[]", "True []"]


def test_an_unknown_public_name_is_an_attribute_error() -> None:
    import helu_lightning

    with pytest.raises(AttributeError, match="no attribute 'Helu'"):
        helu_lightning.Helu  # noqa: B018 - the lookup is the test


def test_serve_help_runs_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": _python_path(_blocker(tmp_path / "blocked"))}
    done = subprocess.run([sys.executable, "-m", "helu_lightning.commands", "serve", "--help"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--export_dir" in done.stdout


@pytest.mark.slow
def test_server_and_workers_answer_without_torch_and_stay_small(tmp_path: Path) -> None:
    run, export = tmp_path / "run", tmp_path / "export"
    fast = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--test_after_fit", "false"]
    for args in (["fit", "--config", "configs/offline.yaml", "--trainer.default_root_dir", str(run), *fast],
                 ["export", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--output_dir", str(export),
                  "--format", "onnx"]):
        done = subprocess.run([sys.executable, "-m", "helu_lightning.commands", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-2000:]
    env = {"PYTHONPATH": _python_path(_blocker(tmp_path / "blocked"))}
    png = io.BytesIO()
    Image.fromarray(np.eye(8, dtype=np.uint8) * 255, "L").save(png, format="PNG")
    with running_server(["--export_dir", str(export), "--workers", "2"], log=tmp_path / "server.log",
                        env=env) as (port, process):
        status, answer = post(port, png.getvalue(), "image/png")
        assert status == 200 and answer["label"] in [str(d) for d in range(10)], answer
        tree = [process.pid, *descendants(process.pid)]
        megabytes = {pid: _resident_mb(pid) for pid in tree}
    assert len(tree) >= 3, "the server and its two workers"
    # torch alone is ~0.5 GB resident once imported; onnxruntime, LitServe and a digits model stay well below it.
    assert max(megabytes.values()) < 300, megabytes


def _resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_readme_quotes_the_serve_memory_artifact() -> None:
    """The README's memory numbers are the ones benchmarks/serve_memory.py wrote."""
    text = (ROOT / "benchmarks" / "results" / "serve_memory.txt").read_text()
    before, after = (part.split("\n## ")[0] for part in text.split("\n## before")[1].split("\n## after"))
    rows = {name: [int(line.split()[1]) for line in part.splitlines() if re.match(r"\s*(main|\d+)\s+\d+", line)]
            for name, part in (("before", before), ("after", after))}
    totals = {name: re.search(r"total (\d+) MiB over (\d+)", part).groups() for name, part in (("before", before),
                                                                                             ("after", after))}
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (f"largest process {max(rows['after'])} MiB ({max(rows['before'])} MiB while the face imported torch), "
            f"all {totals['after'][1]} processes {totals['after'][0]} MiB ({totals['before'][0]} MiB)") in readme
