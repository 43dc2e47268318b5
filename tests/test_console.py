"""The main job's console: Lightning's progress and metric tables, no litlogger tip, no warnings about library
internals, no Hugging Face load report; and .gitignore covers what the README's commands write."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# `path.py:123: message` is how warnings.warn prints, whatever the message says (Lightning's rarely say "warning").
NOISE = re.compile(r"litlogger|warning|deprecat|LOAD REPORT|\.py:\d+: ", re.IGNORECASE)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "PYTHONWARNINGS", "HELU_DEBUG"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "helu_lightning.commands", "fit", *args,
                           "--trainer.default_root_dir", str(tmp_path / "run")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize(("config", "cut"), [
    ("offline.yaml", ["--trainer.max_epochs", "2"]),
    ("text_offline.yaml", ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                           "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "1",
                           "--trainer.limit_test_batches", "1"]),
])
def test_main_jobs_print_no_noise(config: str, cut: list[str], tmp_path: Path) -> None:
    result = _run(tmp_path, "--config", str(ROOT / "configs" / config), *cut)
    assert result.returncode == 0, result.stderr[-2000:]
    noise = [line for line in (result.stdout + result.stderr).splitlines() if NOISE.search(line)]
    assert noise == [], noise
    assert "test/acc" in result.stdout, "the metrics table is still printed"


@pytest.mark.slow
def test_resume_prints_no_noise(tmp_path: Path) -> None:
    # `fit --ckpt_path last` (README "Resuming") into the folder the first run filled: no "exists and is not empty".
    cut = ["--config", str(ROOT / "configs" / "offline.yaml"), "--trainer.limit_train_batches", "2",
           "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "1", "--test_after_fit", "false"]
    assert _run(tmp_path, *cut, "--trainer.max_epochs", "1").returncode == 0
    result = _run(tmp_path, *cut, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Restored all states" in result.stdout + result.stderr
    noise = [line for line in (result.stdout + result.stderr).splitlines() if NOISE.search(line)]
    assert noise == [], noise


def test_gitignore_covers_what_the_readme_commands_write() -> None:
    written = {"runs/offline/checkpoints/last.ckpt", "lightning_logs/version_0/metrics.csv", "exported/offline/x",
               "plots/digits/alpha.png", "glue_predictions/RTE.tsv", "data/cifar10/cifar-10-batches-py/test_batch"}
    result = subprocess.run(["git", "check-ignore", "--no-index", *written], cwd=ROOT, capture_output=True,
                            text=True)
    assert set(result.stdout.split()) == written
    package = subprocess.run(["git", "check-ignore", "--no-index", "helu_lightning/data/new.py"], cwd=ROOT)
    assert package.returncode == 1, "the data package must not be ignored"


def test_onnxruntime_quantization_advice_is_dropped() -> None:
    # onnxruntime's quantize_dynamic logs this on the root logger at every `export --quantize int8` and compare run.
    code = ("import logging; from helu_lightning.console import quiet_console; quiet_console(); "
            "logging.warning('Please consider to run pre-processing before quantization. Refer to example: x'); "
            "logging.warning('Please consider pre-processing before quantization. See y'); "
            "logging.warning('a real warning stays')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == ["WARNING:root:a real warning stays"]
