"""Every path option is a local path: ``file://``, ``s3://`` or any ``scheme://`` value of a folder or file option
(``default_root_dir``, a checkpoint ``dirpath``, a logger's ``save_dir``, ``output_dir``, ``export_dir``,
``ckpt_path``, ...) stops ``helu-train`` in one line naming the option and the fix, before anything is written; a
symlinked checkpoint ``dirpath`` is refused before Lightning resolves it. Each case runs ``helu-train`` in a fresh
process."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from test_restored_state import fit, helu_train

pytestmark = pytest.mark.filterwarnings("ignore")


def _one_line(done, *words: str) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1 and all(w in errors[0] for w in words), done.stderr[-3000:]
    return errors[0]


def _nothing_written(cwd: Path) -> None:
    written = sorted(cwd.rglob("*"))
    assert not any(p.name.startswith(("file:", "s3:", "gs:", "memory:")) for p in written), written


@pytest.mark.parametrize("scheme", ["file://", "s3://bucket", "memory::"])
def test_fit_refuses_a_url_as_its_run_folder(tmp_path: Path, scheme: str) -> None:
    target = tmp_path / "abs" / "run"
    (tmp_path / "cwd").mkdir()
    done = fit(tmp_path / "cwd" / "unused", "--trainer.default_root_dir", f"{scheme}{target}", epochs=1)
    line = _one_line(done, "--trainer.default_root_dir", "is a URL", "local path")
    if scheme == "file://":
        assert f"--trainer.default_root_dir {target}" in line  # the fix: the same folder as a plain path
    assert not target.exists()
    _nothing_written(tmp_path)


def _config(tmp_path: Path, trainer: dict) -> Path:
    path = tmp_path / "extra.yaml"
    path.write_text(yaml.safe_dump({"trainer": trainer}))
    return path


CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"


@pytest.mark.parametrize("where", ["dirpath", "logger save_dir", "predictions output_file"])
def test_fit_refuses_a_url_in_any_path_option_of_its_config(tmp_path: Path, where: str) -> None:
    url = f"file://{tmp_path / 'elsewhere'}"
    trainer = {
        "dirpath": {"callbacks": [{"class_path": CHECKPOINT, "init_args": {"dirpath": url, "monitor": "val/acc",
                                                                         "mode": "max"}}]},
        "logger save_dir": {"logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                       "init_args": {"save_dir": url}}},
        "predictions output_file": {"callbacks": [{"class_path": "helu_lightning.callbacks.PredictionWriter",
                                                   "init_args": {"output_file": url + "/p.csv"}}]},
    }[where]
    run = tmp_path / "cwd" / "run"
    run.parent.mkdir()
    done = fit(run, "--config", str(_config(tmp_path, trainer)), epochs=1)
    _one_line(done, where.split()[-1], "is a URL (file://)")
    assert not run.exists() and not (tmp_path / "elsewhere").exists()
    _nothing_written(tmp_path)


@pytest.mark.parametrize("command, option", [
    (["export", "--ckpt_path", "LOCAL", "--output_dir", "URL"], "--output_dir"),
    (["export", "--ckpt_path", "URL", "--output_dir", "LOCAL"], "--ckpt_path"),
    (["plot", "LOCAL", "--output_dir", "URL"], "--output_dir"),
    (["plot", "URL"], "run_dirs"),
    (["serve", "--export_dir", "URL"], "--export_dir"),
    (["compare", "--config", "LOCAL", "--activations", "relu", "helu", "--output_dir", "URL"], "--output_dir"),
    (["search", "--config", "LOCAL", "--output_dir", "URL"], "--output_dir"),
])
def test_every_command_refuses_a_url_as_a_path_before_any_work(tmp_path: Path, command: list, option: str) -> None:
    local = tmp_path / "local"
    local.mkdir()
    args = [str(local) if a == "LOCAL" else f"s3://bucket{tmp_path}/out" if a == "URL" else a for a in command]
    done = helu_train(*args, cwd=tmp_path)
    _one_line(done, option, "is a URL (s3://)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local"]


@pytest.mark.parametrize("trailing", ["", "/"])
def test_a_symlinked_checkpoint_dirpath_is_refused_before_lightning_resolves_it(tmp_path: Path, trailing: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "epoch=0-step=2.ckpt").write_text("someone else's")
    link = tmp_path / "ckpts"
    link.symlink_to(elsewhere, target_is_directory=True)
    trainer = {"callbacks": [{"class_path": CHECKPOINT, "init_args": {"dirpath": f"{link}{trailing}",
                                                                      "monitor": "val/acc", "mode": "max"}}]}
    done = fit(tmp_path / "run", "--config", str(_config(tmp_path, trainer)), epochs=1)
    _one_line(done, "dirpath", "is a symbolic link")
    assert sorted(os.listdir(elsewhere)) == ["epoch=0-step=2.ckpt"]
    assert (elsewhere / "epoch=0-step=2.ckpt").read_text() == "someone else's"


@pytest.mark.parametrize("option, config", [
    ("--data.tokenizer", {"data": {"init_args": {"tokenizer": "hf://bert-base"}}}),
    ("--model.pretrained", {"model": {"init_args": {"pretrained": "s3://models/bert"}}}),
    ("--data.data_dir", {"data": {"init_args": {"data_dir": "file:///data"}}}),
    ("--trainer.callbacks[0].dirpath", {"trainer": {"callbacks": [{"init_args": {"dirpath": "gs://b/c"}}]}}),
])
def test_a_url_anywhere_in_a_trainer_config_is_named_by_its_option(option: str, config: dict) -> None:
    from helu_lightning.errors import UserError
    from helu_lightning.local_paths import refuse_remote_config

    with pytest.raises(UserError, match=re.escape(option) + " .* is a URL"):
        refuse_remote_config(config)


@pytest.mark.parametrize("value", ["file::/tmp/run", "memory::/x", "simplecache::s3://bucket/x", "s3://bucket/x",
                                   "file:///tmp/run", "gs://b/x"])
def test_a_protocol_or_fsspec_chain_is_refused_in_one_line(value: str) -> None:
    from helu_lightning.errors import UserError
    from helu_lightning.local_paths import refuse_remote

    with pytest.raises(UserError, match=r"--output_dir .* is a URL .*local path") as refused:
        refuse_remote(value, "--output_dir")
    assert "\n" not in str(refused.value)
    if value.startswith("file:"):
        assert str(refused.value).endswith("--output_dir /tmp/run")


@pytest.mark.parametrize("value", ["/tmp/a::b", "runs/x", "relative/dir", "C_drive/x"])
def test_local_paths_with_colons_or_none_pass(value: str) -> None:
    from helu_lightning.local_paths import refuse_remote

    refuse_remote(value, "--output_dir")
