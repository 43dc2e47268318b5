"""A DataModule rebuilt from a checkpoint (``helu-train export``, ``load_from_checkpoint``) takes where to READ from
the checkpoint but never where to WRITE: caching is off and cache folders unset unless the caller says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_export import text_ckpt  # noqa: F401  (the tiny-BERT SST-2 checkpoint fixture)

from helu_lightning.checkpoints import CheckpointError, write_arguments
from helu_lightning.data.glue import GlueDataModule

ROOT = Path(__file__).resolve().parents[1]


def _planted(clean: Path, tmp_path: Path, **hparams: object) -> Path:
    ckpt = torch.load(clean, weights_only=True)
    ckpt["datamodule_hyper_parameters"].update(hparams)
    path = tmp_path / "planted.ckpt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("cache_dir", ["elsewhere/deep/cache", "abs"])
def test_export_never_writes_where_a_checkpoints_datamodule_says(text_ckpt: Path, tmp_path: Path,  # noqa: F811
                                                                 cache_dir: str) -> None:
    target = tmp_path / "elsewhere" / "deep" / "cache"
    planted = _planted(text_ckpt, tmp_path, use_cache=True,
                       cache_dir=str(target) if cache_dir == "abs" else cache_dir)
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "helu_lightning", "export", "--ckpt_path", str(planted),
                           "--output_dir", str(tmp_path / "out"), "--format", "onnx",
                           "--data", "helu_lightning.data.glue.GlueDataModule"],
                          cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "elsewhere").exists(), "export wrote into the checkpoint's cache_dir"


def test_load_from_checkpoint_turns_caching_off_unless_the_caller_asks(text_ckpt: Path,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    planted = _planted(text_ckpt, tmp_path, use_cache=True, cache_dir=str(tmp_path / "theirs"))
    data = GlueDataModule.load_from_checkpoint(planted)
    assert data.hparams.use_cache is False and data.hparams.cache_dir is None
    mine = GlueDataModule.load_from_checkpoint(planted, use_cache=True, cache_dir=str(tmp_path / "mine"))
    assert mine.hparams.use_cache is True and mine.hparams.cache_dir == str(tmp_path / "mine")
    assert write_arguments(GlueDataModule) == {"cache_dir": None, "use_cache": False}


@pytest.mark.parametrize("data_dir", ["s3://bucket/glue", "file:///etc", "simplecache::s3://b/g"])
def test_a_checkpoints_data_dir_must_be_a_plain_local_path(text_ckpt: Path, tmp_path: Path,  # noqa: F811
                                                           data_dir: str) -> None:
    planted = _planted(text_ckpt, tmp_path, data_dir=data_dir)
    with pytest.raises(CheckpointError, match="not a plain local path"):
        GlueDataModule.load_from_checkpoint(planted)
