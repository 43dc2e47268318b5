"""Atomic writes: whole files or nothing, usual permissions, existing directories kept unless overwriting."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from helu_lightning.io import atomic_directory, atomic_write_bytes, atomic_write_text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_text_writes_whole_file_with_umask_permissions(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "sub" / "config.yaml", "a: 1\n")
    assert target.read_text() == "a: 1\n"
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(target) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"], "no temporary file left behind"


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "best.yaml", "old\n")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, 123)  # type: ignore[arg-type]  # fails inside the write, after the temp file exists
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["best.yaml"]


def test_atomic_directory_renames_on_success_and_refuses_existing(tmp_path: Path) -> None:
    out = tmp_path / "export"
    with atomic_directory(out) as tmp:
        (tmp / "model.bin").write_bytes(b"1")
        assert not out.exists(), "nothing visible before the block ends"
    assert (out / "model.bin").read_bytes() == b"1"
    umask = os.umask(0)
    os.umask(umask)
    assert _mode(out) == 0o777 & ~umask
    with pytest.raises(FileExistsError, match="overwrite"):
        with atomic_directory(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_directory(out, overwrite=True) as tmp:
            (tmp / "model.bin").write_bytes(b"2")
            raise RuntimeError("crash mid-export")
    assert (out / "model.bin").read_bytes() == b"1", "a failed overwrite keeps the old export"
    with atomic_directory(out, overwrite=True) as tmp:
        (tmp / "model.bin").write_bytes(b"3")
    assert (out / "model.bin").read_bytes() == b"3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
