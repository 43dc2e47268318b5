"""Every option that names a file or folder is a local path. A protocol prefix (``file://``, ``s3://``, anything
with ``://``, or an fsspec chain such as ``memory::/x``) is refused up front, in one line naming the option and the
fix: Lightning would write logs through fsspec to one place and checkpoints to ``./file:/...`` under the working
directory, and the run lock and the ownership checks see only local folders. A folder a run writes and deletes
checkpoints in is checked for being a symbolic link here, before Lightning resolves it (``ModelCheckpoint`` stores
``realpath(dirpath)``)."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from typing import Any

from .errors import UserError

__all__ = ["PATH_OPTION", "refuse_linked_run_folders", "refuse_remote", "refuse_remote_config",
           "refuse_remote_options"]

# Option names that hold a path: default_root_dir, dirpath, save_dir, data_dir, output_dir, export_dir, ckpt_path,
# output_file, cache_dir, run_dirs, config, tokenizer and pretrained (a local folder or a hub name), ...
PATH_OPTION = re.compile(r"(.*_(dir|dirs|path|paths|file|files|root)|dirpath|root|config|tokenizer|pretrained)")
# Folders a run writes checkpoints into and rotates (deletes) them in.
_RUN_FOLDERS = ("default_root_dir", "dirpath")


# A protocol prefix: "scheme://..." or an fsspec chain "scheme::..." (file::/x, memory::/x, simplecache::s3://b/x),
# which Lightning's fsspec I/O would also follow while other writers take it as a relative local path.
_PROTOCOL = re.compile(r"^([A-Za-z][\w+.-]*)(://|::)(.*)$", flags=re.S)


def refuse_remote(value: Any, option: str) -> None:
    """UserError when ``value`` (a path option's value) carries a protocol prefix such as ``file://``, ``s3://`` or
    an fsspec chain such as ``memory::/x``."""
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str):
        return
    found = _PROTOCOL.match(text)
    if found is None:
        if "://" not in text:
            return
        found = re.match(r"^(.*?)(://)(.*)$", text, flags=re.S)
    scheme, separator, rest = found.groups()
    fix = (f"pass the local path itself: {option} {rest if rest.startswith('/') else '/' + rest}"
           if scheme.lower() == "file" else
           f"copy or mount the data locally and pass its local path as {option}")
    raise UserError(f"{option} {text!r} is a URL ({scheme}{separator}); helu-train reads and writes local paths only "
                    f"(logs, checkpoints and the run lock in one place): {fix}")


def _walk(value: Any, where: str) -> list[tuple[str, Any]]:
    """``(dotted option, value)`` for every value below ``value`` whose own key names a path."""
    found: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            option = f"{where}.{key}" if where else str(key)
            if PATH_OPTION.fullmatch(str(key)):
                found.extend((option, v) for v in (item if isinstance(item, (list, tuple)) else [item]))
            found.extend(_walk(item, option))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found.extend(_walk(item, f"{where}[{i}]"))
    return found


def _plain(config: Any) -> Any:
    """A jsonargparse Namespace (or anything with ``as_dict``) as nested dicts and lists."""
    return config.as_dict() if hasattr(config, "as_dict") else config


def refuse_remote_config(config: Any) -> None:
    """UserError naming the first path option in a Trainer command's ``config`` (nested) that is a URL, e.g.
    ``--trainer.default_root_dir file:///abs/run`` or a checkpoint callback's ``dirpath: s3://bucket/ckpt``."""
    for option, value in _walk(_plain(config), ""):
        refuse_remote(value, "--" + option.replace(".init_args.", "."))


def refuse_remote_options(args: argparse.Namespace) -> None:
    """UserError naming the first parsed path option of a command (``--output_dir``, ``--ckpt_path``, ...) that is
    a URL."""
    for option, value in _walk(vars(args), ""):
        refuse_remote(value, "--" + option)


def refuse_linked_run_folders(config: Any) -> None:
    """UserError when ``default_root_dir`` or a checkpoint callback's ``dirpath`` is a symbolic link, checked on
    the config as given (Lightning resolves ``dirpath`` with realpath before anything else could see the link)."""
    for option, value in _walk(_plain(config), ""):
        if option.rsplit(".", 1)[-1] not in _RUN_FOLDERS or not isinstance(value, (str, os.PathLike)):
            continue
        path = os.fspath(value).rstrip(os.sep) or os.sep
        if os.path.islink(path):
            raise UserError(f"--{option.replace('.init_args.', '.')} {os.fspath(value)} is a symbolic link (to "
                            f"{os.path.realpath(path)}); helu-train writes and deletes checkpoints only in a folder "
                            "of its own: pass the real folder, or another folder")
