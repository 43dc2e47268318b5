"""The rule for a path that came from a checkpoint rather than the user: a plain local path (no ``scheme:`` or
``scheme://`` prefix, no ``..``) whose real location, links followed, lies inside one of this run's checkpoint
folders. Restored callback state must pass it to be kept, and a checkpoint file must pass it to be deleted."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["looks_like_path", "outside_reason"]

# "local:", "file:", "s3:", "simplecache::s3:" ... but not "/abs/path" or "epoch=1-step=20.ckpt".
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_SCHEME_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:/")


def looks_like_path(value: str) -> bool:
    """Whether a restored string is a path or URL wherever it sits (absolute, home-relative, ``..``, ``scheme:/``)."""
    return ("://" in value or "::" in value or value.startswith(("/", "~")) or bool(_SCHEME_PATH.match(value))
            or ".." in value.replace("\\", "/").split("/"))


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder and path != folder


def outside_reason(path: Any, folders: Iterable[Any]) -> str | None:
    """Why ``path`` is not a plain local path inside one of ``folders`` (None: it is)."""
    if not isinstance(path, str):
        return f"a {type(path).__name__}, not a path"
    if "\0" in path or not path.strip():
        return "not a path"
    if "://" in path or "::" in path or _SCHEME.match(path):
        return "a URL or protocol path; only plain local paths are restored"
    if ".." in path.replace("\\", "/").split("/"):
        return "a path that climbs out with '..'"
    real = os.path.realpath(os.path.expanduser(path))
    local = [os.path.realpath(str(f)) for f in folders if isinstance(f, (str, os.PathLike)) and f
             and not (isinstance(f, str) and ("://" in f or _SCHEME.match(f)))]
    if not any(_inside(real, folder) for folder in local):
        where = " or ".join(local) if local else "no local checkpoint folder"
        return f"outside this run's checkpoint folder ({where})" + (f"; it resolves to {real}" if real != path else "")
    return None
