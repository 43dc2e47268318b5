"""Where an export may go: checked before any work, so export never deletes or overwrites what it did not write.

``--overwrite`` replaces only a previous export (a folder whose ``manifest.json`` lists every file in it); the
output folder never holds the source checkpoint; symbolic links and files are refused; the folder is written
beside its destination and renamed into place, so a crash or a kill leaves no partial export.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError
from ..io import atomic_directory
from .manifest import MANIFEST, read_manifest, sha256_file

__all__ = ["ExportOutputError", "check_output_dir", "export_folder"]


class ExportOutputError(UserError):
    """An ``--output_dir`` that export must not write to or replace."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_writable(output_dir: Path) -> None:
    parent = output_dir.parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():
            raise ExportOutputError(f"--output_dir {output_dir}: {parent} is a dangling symbolic link; pass a real "
                                    "folder path")
        parent = parent.parent
    if not parent.is_dir():
        raise ExportOutputError(f"--output_dir {output_dir}: {parent} is not a folder; choose another --output_dir")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportOutputError(f"--output_dir {output_dir}: cannot write to {parent} (permission denied); choose a "
                                "folder you can write to")


def _foreign_entries(output_dir: Path, manifest: dict) -> tuple[list[str], list[str]]:
    """What --overwrite would delete that the previous export did not write: (files or links it does not list,
    listed files whose bytes changed since). Paths are POSIX, relative to ``output_dir``, at any depth."""
    contents = manifest.get("contents")
    if not isinstance(contents, dict):  # an export from before per-file records: only top-level files are known
        listed = {str(name) for name in manifest["files"].values()}
        contents = {name: None for name in listed if (output_dir / name).is_file()}
    present = {MANIFEST}
    changed = []
    for name, digest in contents.items():
        path = output_dir / str(name)
        inside = os.path.realpath(path).startswith(os.path.realpath(output_dir) + os.sep)
        if inside and path.is_file() and not path.is_symlink():
            present.add(str(name))
            if digest is not None and sha256_file(path) != digest:
                changed.append(str(name))
    ancestors = {parent.as_posix() for name in present for parent in Path(name).parents} - {"."}
    foreign = []
    for root, dirs, files in os.walk(output_dir):
        for entry in sorted(dirs + files):
            rel = (Path(root) / entry).relative_to(output_dir).as_posix()
            if rel in ancestors and not (Path(root) / entry).is_symlink():
                continue
            if rel not in present:
                foreign.append(rel)
        dirs[:] = [d for d in dirs if (Path(root, d).relative_to(output_dir).as_posix() in ancestors)]
    return sorted(foreign), sorted(changed)


def _check_replaceable(output_dir: Path) -> None:
    """Refuse to replace anything but a previous export whose manifest lists every file in it, at any depth, with
    the bytes it wrote."""
    manifest = read_manifest(output_dir)
    if manifest is None:
        raise ExportOutputError(f"--output_dir {output_dir} exists and is not a helu-train export (no valid "
                                f"{MANIFEST}); --overwrite only replaces a previous export, so choose another "
                                "--output_dir or move that folder away yourself")
    foreign, changed = _foreign_entries(output_dir, manifest)
    if foreign:
        older = "" if isinstance(manifest.get("contents"), dict) else (
            ", or its manifest predates per-file records and cannot vouch for the folders in it")
        raise ExportOutputError(f"--output_dir {output_dir} holds files the previous export did not write "
                                f"({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}{older}); --overwrite "
                                "would delete them: move them away or choose another --output_dir")
    if changed:
        raise ExportOutputError(f"--output_dir {output_dir}: {', '.join(changed[:5])} changed since the previous "
                                "export wrote it; --overwrite would delete those changes: move the files away or "
                                "choose another --output_dir")


def check_output_dir(output_dir: str | os.PathLike, ckpt_path: str | os.PathLike, overwrite: bool) -> Path:
    """Validate ``output_dir`` for an export of ``ckpt_path`` before any work; return it as a Path."""
    output_dir = Path(output_dir)
    if output_dir.is_symlink():
        raise ExportOutputError(f"--output_dir {output_dir} is a symbolic link (to {os.readlink(output_dir)}); "
                                "pass a real folder path")
    real_out, real_ckpt = Path(os.path.realpath(output_dir)), Path(os.path.realpath(ckpt_path))
    if _inside(real_ckpt, real_out):
        raise ExportOutputError(f"--output_dir {output_dir} contains the checkpoint {ckpt_path}; choose a folder "
                                "outside the checkpoint's folder")
    if output_dir.exists():
        if not output_dir.is_dir():
            raise ExportOutputError(f"--output_dir {output_dir} is a file, not an export folder; choose another "
                                    "--output_dir")
        if not overwrite:
            raise ExportOutputError(f"--output_dir {output_dir} already exists; choose another --output_dir or pass "
                                    "--overwrite to replace a previous export")
        _check_replaceable(output_dir)
    _check_writable(output_dir)
    return output_dir


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while exporting, so the temporary folder is removed on the way out."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: signals stay as they are
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def export_folder(output_dir: Path, ckpt_path: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary folder beside ``output_dir``, renamed into place on success (re-checked just before)."""
    with _sigterm_unwinds(), atomic_directory(output_dir, overwrite=overwrite) as tmp:
        yield tmp
        check_output_dir(output_dir, ckpt_path, overwrite)
