"""Callback state restored from a checkpoint is data: every path in it must lie inside this run's checkpoint folder.

ModelCheckpoint deletes its old top-k and last files by the paths it restores (``best_k_models`` keys,
``kth_best_model_path``, ``best_model_path``, ``last_model_path``), and ``test_after_fit`` loads ``best_model_path``;
a checkpoint from someone else must steer neither. A path that fails :func:`helu_lightning.run_paths.outside_reason`
(or, in ModelCheckpoint state, :func:`foreign_reason`: a ``.ckpt`` of the callback's own name pattern) is dropped
(an empty path, a removed entry) with one warning line per callback; ModelCheckpoint then forgets its
whole top-k list, which it rebuilds from the next saves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn

from .run_paths import looks_like_path, outside_reason

__all__ = ["checkpoint_folders", "clean_callback_states", "foreign_reason", "written_name"]

# Keys whose string value any callback keeps as a file or folder (best_model_path, dirpath, ckpt_path, log_file...).
_PATH_KEY = re.compile(r"path|dir|file", re.IGNORECASE)
_TOP_K_PATHS = ("best_model_path", "kth_best_model_path", "last_model_path")


def checkpoint_folders(trainer: Trainer) -> list[str]:
    """The folders this run's checkpoint callbacks write to (real paths)."""
    folders = []
    for callback in trainer.checkpoint_callbacks:
        folder = getattr(callback, "dirpath", None)
        if isinstance(folder, (str, os.PathLike)) and folder:
            folders.append(os.path.realpath(folder) if "://" not in str(folder) else str(folder))
    return folders


def _clean(node: Any, key: str, folders: Iterable[str], dropped: list[str]) -> Any:
    """``node`` with every bad path emptied (a string under a path-named key, or any path- or URL-like string) or
    removed (a mapping key that is a path, like ``best_k_models``'s)."""
    if isinstance(node, MutableMapping):
        for name in list(node):
            where = f"{key}.{name}" if key else str(name)
            if isinstance(name, str) and looks_like_path(name) and outside_reason(name, folders):
                dropped.append(f"{key}[{name!r}]")
                del node[name]
            elif isinstance(name, str) and _PATH_KEY.search(name) and isinstance(node[name], str) and (
                    "/" in node[name] or looks_like_path(node[name])):  # a bare file name template stays
                node[name] = _checked(node[name], where, folders, dropped)
            else:
                node[name] = _clean(node[name], where, folders, dropped)
        return node
    if isinstance(node, (list, tuple)):
        items = [_clean(item, f"{key}[{i}]", folders, dropped) for i, item in enumerate(node)]
        return items if isinstance(node, list) else tuple(items)
    if isinstance(node, str) and looks_like_path(node):
        return _checked(node, key, folders, dropped)
    return node


def _checked(value: str, key: str, folders: Iterable[str], dropped: list[str]) -> str:
    if value and outside_reason(value, folders):
        dropped.append(f"{key}={value!r}")
        return ""
    return value


def written_name(callback: ModelCheckpoint) -> re.Pattern[str]:
    """The names, relative to its ``dirpath``, of the files ``callback`` writes: its ``filename`` template (metric
    values as any text, ``name=`` inserted as Lightning does) or its last-file name, an optional ``-vN``, ``.ckpt``."""
    template = callback.filename or "{epoch}" + callback.CHECKPOINT_JOIN_CHAR + "{step}"
    fields = re.findall(r"\{([^{}:]*)(?::[^{}]*)?\}", template)
    literals = re.split(r"\{[^{}]*\}", template)
    pattern = re.escape(literals[0])
    for name, literal in zip(fields, literals[1:]):
        label = name + callback.CHECKPOINT_EQUALS_CHAR if callback.auto_insert_metric_name else ""
        pattern += re.escape(label) + r"[^/]+?" + re.escape(literal)
    names = f"(?:{pattern}|{re.escape(callback.CHECKPOINT_NAME_LAST)})"
    return re.compile(names + re.escape(callback.CHECKPOINT_JOIN_CHAR) + r"?(?:v\d+)?" +
                      re.escape(callback.FILE_EXTENSION))


def foreign_reason(path: Any, callback: ModelCheckpoint) -> str | None:
    """Why a restored ``path`` is not a file ``callback`` could have written (None: it could): it must lie in the
    callback's folder, carry a name of its pattern and, where it exists, be a regular file."""
    reason = outside_reason(path, checkpoint_folders_of(callback))
    if reason is not None:
        return reason
    name = os.path.relpath(os.path.abspath(os.path.expanduser(path)), os.path.abspath(str(callback.dirpath)))
    if name.startswith("..") or not written_name(callback).fullmatch(name.replace(os.sep, "/")):
        return f"not a name {type(callback).__name__} writes in its folder (filename {callback.filename!r})"
    if os.path.lexists(path) and not os.path.isfile(path) or os.path.islink(path):
        return "not a regular file"
    return None


def _clean_model_checkpoint(state: MutableMapping[str, Any], callback: ModelCheckpoint, dropped: list[str]) -> None:
    folders = checkpoint_folders_of(callback)
    if "dirpath" in state and state["dirpath"] and outside_reason(os.path.join(str(state["dirpath"]), "x"), folders):
        dropped.append(f"dirpath={state['dirpath']!r}")
        del state["dirpath"]  # Lightning then compares against its own folder: every path below is checked anyway
    forget = False
    for key in _TOP_K_PATHS:
        value = state.get(key)
        if value is not None and (not isinstance(value, str) or (value and foreign_reason(value, callback))):
            dropped.append(f"{key}={value!r}")
            state[key] = ""
            forget = forget or key == "kth_best_model_path"
    top_k = state.get("best_k_models")
    if top_k is not None and not isinstance(top_k, Mapping):
        dropped.append(f"best_k_models (a {type(top_k).__name__})")
        forget = True
    elif top_k:
        bad = [path for path in top_k if foreign_reason(path, callback)]
        dropped += [f"best_k_models[{path!r}]" for path in bad]
        forget = forget or bool(bad)
    if forget:  # a partial top-k list would name a k-th file that is not in it: start the list afresh
        state["best_k_models"], state["kth_best_model_path"] = {}, ""
        state.pop("kth_value", None)
    for name in list(state):
        if name not in (*_TOP_K_PATHS, "best_k_models", "dirpath"):
            state[name] = _clean(state[name], str(name), folders, dropped)


def checkpoint_folders_of(callback: ModelCheckpoint) -> list[str]:
    """A ModelCheckpoint's own folder (real path) as a one-item list, or none when it has no local folder yet."""
    folder = callback.dirpath
    return [os.path.realpath(folder)] if isinstance(folder, (str, os.PathLike)) and folder else []


def clean_callback_states(checkpoint: MutableMapping[str, Any], trainer: Trainer, source: Any) -> set[str]:
    """Drop, in place, every path in ``checkpoint["callbacks"]`` that lies outside this run's checkpoint folders
    (or, for a ModelCheckpoint, is no file it writes), with one warning line per callback naming what was dropped.
    Returns the checkpoint files the kept ModelCheckpoint state names: the only restored paths a rotation may
    delete."""
    states = checkpoint.get("callbacks")
    kept: set[str] = set()
    if not isinstance(states, MutableMapping):
        return kept
    live = {callback.state_key: callback for callback in trainer.callbacks}
    folders = checkpoint_folders(trainer)
    for state_key, state in states.items():
        callback = live.get(state_key)
        if callback is None or not isinstance(state, MutableMapping):
            continue
        dropped: list[str] = []
        if isinstance(callback, ModelCheckpoint):
            _clean_model_checkpoint(state, callback, dropped)
            paths = [*(state.get("best_k_models") or {}), *(state.get(key) for key in _TOP_K_PATHS)]
            kept.update(os.path.abspath(path) for path in paths if isinstance(path, str) and path)
        else:
            _clean(state, "", folders, dropped)
        if dropped:
            where = checkpoint_folders_of(callback) if isinstance(callback, ModelCheckpoint) else folders
            rank_zero_warn(f"checkpoint {source}: ignoring {', '.join(dropped)} restored for {type(callback).__name__}"
                           f"; a restored path must be a plain local path inside {' or '.join(where) or 'a folder'}")
    return kept
