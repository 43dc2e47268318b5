"""Reading checkpoints safely: the one reader behind ``helu-train fit/validate/test/predict --ckpt_path``,
``helu-train export`` and the tasks' and DataModules' ``load_from_checkpoint``.

A checkpoint is data from someone else. It is read with ``weights_only`` (no pickled objects), and every import
path its hyper-parameters name (``class_path``, ``_class_path``, ``_instantiator``, or any dotted string that
jsonargparse could import, at any depth) must resolve to an allowed class: this package's tasks, DataModules,
callbacks and modules, ``torch.optim`` optimizers and LR schedulers, ``torch.nn`` modules and Lightning callbacks.
Anything else stops with an error naming the key, unless the caller opts in to trusting the file.

A command parses a checkpoint file once: the reader keeps the last file it parsed (known by its inode, size and
modification time) and hands each later caller (argument parsing, the finished-run check, Lightning's restore,
``load_from_checkpoint``) its own copy of the containers, sharing the tensors.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import io
import os
import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import torch
import yaml
from lightning.pytorch import LightningDataModule

from .errors import UserError

__all__ = ["CheckpointError", "TrustedLoading", "check_trusted", "read_checkpoint",
           "untrusted_import_paths"]

# Sections of a checkpoint that Lightning turns into constructor arguments ("hparams", "module_arguments": legacy).
HPARAM_SECTIONS = ("hyper_parameters", "datamodule_hyper_parameters", "hparams", "module_arguments")
# Keys whose value jsonargparse / Lightning always imports.
IMPORT_KEYS = ("class_path", "_class_path", "_instantiator")
# Keys whose string value our own code imports in "module:attr" form too (AlphaScheduler's callable schedule).
COLON_IMPORT_KEYS = ("fn",)
ALLOWED_INSTANTIATORS = ("lightning.pytorch.cli.instantiate_module",)
MAX_NODES, MAX_DEPTH = 100_000, 40  # per section; real hyper-parameters hold a few hundred values, 5 levels deep
MAX_CONFIG_BYTES = 10 * 2**20  # a file a value names is read and checked up to this size, refused beyond
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, not a Lightning checkpoint, or asks to import untrusted code."""


def _allowed_bases(module: str) -> tuple[type, ...]:
    """The classes an import path under ``module`` may name (empty: nothing there is allowed)."""
    from lightning.pytorch import Callback, LightningDataModule, LightningModule
    from torch import nn, optim

    trees = {
        "helu_lightning": (LightningModule, LightningDataModule, Callback, nn.Module),
        "torch.optim": (optim.Optimizer, optim.lr_scheduler.LRScheduler, optim.lr_scheduler.ReduceLROnPlateau),
        "torch.nn": (nn.Module,),
        "lightning.pytorch.callbacks": (Callback,),
    }
    for tree, bases in trees.items():
        if module == tree or module.startswith(tree + "."):
            return bases
    return ()


def is_allowed_import_path(path: Any) -> bool:
    """True when ``path`` names a class on the allow-list. Only modules inside the allowed trees are imported."""
    if not isinstance(path, str) or not _DOTTED.fullmatch(path):
        return False
    if path in ALLOWED_INSTANTIATORS:
        return True
    module, _, name = path.rpartition(".")
    bases = _allowed_bases(module)
    if not bases or any(part.startswith("_") for part in path.split(".")):
        return False
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return isinstance(found, type) and issubclass(found, bases)


def _names_a_module(text: str) -> bool:
    """Whether a dotted string (surrounding blanks ignored) starts with an importable top-level module (looked up
    without importing it)."""
    text = text.strip()
    try:
        return _DOTTED.fullmatch(text) is not None and importlib.util.find_spec(text.split(".")[0]) is not None
    except (ImportError, ValueError):
        return True


def _as_config(text: str) -> Any:
    """What jsonargparse could read a string as: inline YAML/JSON, or the YAML file it names (None: neither)."""
    try:
        if os.path.isfile(text):
            if os.path.getsize(text) > MAX_CONFIG_BYTES:
                return {"class_path": f"<a {os.path.getsize(text)}-byte file, too large to check>"}
            with open(text, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        # Any string may be YAML to jsonargparse: "- a.b" is a list and "? a.b" a mapping, with none of "{[:\n".
        loaded = yaml.safe_load(text) if len(text) <= MAX_CONFIG_BYTES else {"class_path": "<too large to check>"}
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, (dict, list)) else None


def _import_targets(value: Any, key: str, budget: list[int], depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Every (dotted key, value) in ``value`` that something could import: import keys, module-like strings, and
    the same inside strings that jsonargparse would parse as YAML or read as a config file. ``budget`` counts the
    nodes left to visit: past it (a YAML alias bomb, a file naming itself) the walk reports an unchecked value."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        yield key, "<too large or too deeply nested to check>"
        return
    if isinstance(value, Mapping):
        for name, item in value.items():
            where = f"{key}.{name}" if key else str(name)
            if isinstance(name, str) and _names_a_module(name):
                yield where, name
            if name in IMPORT_KEYS:
                yield where, item
            elif name in COLON_IMPORT_KEYS and isinstance(item, str) and _names_a_module(item.replace(":", ".")):
                yield where, item
            else:
                yield from _import_targets(item, where, budget, depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _import_targets(item, f"{key}[{index}]", budget, depth + 1)
    elif isinstance(value, str):
        if _names_a_module(value):
            yield key, value
        nested = _as_config(value)
        if nested is not None:
            yield from _import_targets(nested, key, budget, depth + 1)


def untrusted_import_paths(ckpt: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The (key, import path) pairs of a checkpoint's hyper-parameters that are not on the allow-list."""
    found = []
    for section in HPARAM_SECTIONS:
        for key, path in _import_targets(ckpt.get(section) or {}, section, [MAX_NODES]):
            if not is_allowed_import_path(path):
                found.append((key, path))
    return found


def check_trusted(ckpt: Mapping[str, Any], source: Any, trust_flag: str) -> None:
    """Raise CheckpointError naming the first import path outside the allow-list (and ``trust_flag``). Paths in
    callback state are not refused here but dropped when a Trainer restores them (helu_lightning.restored_state)."""
    bad = untrusted_import_paths(ckpt)
    if bad:
        key, path = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckpointError(
            f"checkpoint {source} names {path!r} at {key}{more}, which is not a helu_lightning, torch.optim, torch.nn "
            f"or Lightning callback class; loading it would import or run that code. If you trust this file, pass "
            f"{trust_flag}"
        )


# The last checkpoint file parsed: (file identity, parsed with weights_only, the checkpoint), or None.
_last_parsed: tuple[tuple[Any, ...], bool, dict[str, Any]] | None = None


def _file_identity(path: Path) -> tuple[Any, ...]:
    status = path.stat()
    return (os.path.realpath(path), status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def copy_containers(value: Any) -> Any:
    """``value`` with every dict and list copied (their types and attributes, e.g. a state dict's ``_metadata``,
    kept) and everything else, tensors included, shared: a caller may pop and add keys without touching others."""
    if isinstance(value, dict):
        copied = copy.copy(value)
        for key, item in copied.items():
            copied[key] = copy_containers(item)
        return copied
    if isinstance(value, list):
        return [copy_containers(item) for item in value]
    return value


def forget_parsed_checkpoint() -> None:
    """Drop the kept checkpoint (its last reader is done with it), so its tensors can be freed."""
    global _last_parsed
    _last_parsed = None


def read_checkpoint(
    path: str | Path, weights_only: bool = True, unsafe_flag: str = "weights_only=False", data: bytes | None = None,
    trusted: bool = False, trust_flag: str | None = None,
) -> dict[str, Any]:
    """Load a Lightning checkpoint on the CPU from ``data`` (the file's bytes, when the caller already read them)
    or memory-mapped from ``path``, and check its import paths unless ``trusted``.

    ``weights_only`` refuses pickled Python objects; the errors name ``unsafe_flag``, the caller's opt-in switch
    for pickles, and ``trust_flag`` (default: the same) for import paths. A file read by path is parsed once per
    process while it stays unchanged (see the module doc); each call still runs its own checks.
    """
    global _last_parsed
    path = Path(path)
    if data is None and not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist{' (it is a directory)' if path.is_dir() else ''}; "
                              "pass --ckpt_path with a .ckpt file written by Lightning")
    identity = _file_identity(path) if data is None else None
    if identity is not None and _last_parsed is not None and _last_parsed[0] == identity \
            and (_last_parsed[1] or not weights_only):  # a pickle-free parse serves any caller; a trusted one not
        ckpt = copy_containers(_last_parsed[2])
        if not trusted:
            check_trusted(ckpt, path, trust_flag or unsafe_flag)
        return ckpt
    if not zipfile.is_zipfile(io.BytesIO(data) if data is not None else path):
        size = len(data) if data is not None else path.stat().st_size
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: torch.save and Lightning write a zip "
                              f"archive and these {size} bytes are not one; re-copy it or choose another checkpoint")
    try:
        if data is not None:
            ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=weights_only)
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)
    except pickle.UnpicklingError as err:
        reason = next((line for line in str(err).splitlines() if "Unsupported" in line), str(err).splitlines()[0])
        raise CheckpointError(f"checkpoint {path} holds pickled Python objects that weights_only loading refuses "
                              f"({reason.strip()}); if you trust the file, pass {unsafe_flag}") from err
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({str(err).splitlines()[0]}); re-copy it "
                              "or choose another checkpoint") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        found = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no 'state_dict' (found {found}); "
                              "pass a .ckpt written by Trainer / ModelCheckpoint")
    for section in (*HPARAM_SECTIONS, "callbacks", "state_dict"):
        if ckpt.get(section) is not None and not isinstance(ckpt[section], Mapping):
            raise CheckpointError(f"{path} is not a Lightning checkpoint: its {section!r} is a "
                                  f"{type(ckpt[section]).__name__}, not a mapping; pass a .ckpt written by Lightning")
    if identity is not None:
        _last_parsed = (identity, weights_only, ckpt)
        ckpt = copy_containers(ckpt)
    if not trusted:
        check_trusted(ckpt, path, trust_flag or unsafe_flag)
    return ckpt


# DataModule arguments that say where to write (a token cache, an output file): a checkpoint never chooses them.
_WRITES = re.compile(r"(use_cache|cache|cache_dir|cache_path|(output|out|save|write|log)_(dir|path|file))")


def write_arguments(cls: type) -> dict[str, Any]:
    """The arguments of ``cls.__init__`` that name where it writes, with the value that writes nothing (caching off,
    no folder): what a DataModule rebuilt from a checkpoint gets instead of the checkpoint's values."""
    parameters = inspect.signature(cls.__init__).parameters
    return {name: False if name.startswith("use_") else None for name in parameters if _WRITES.fullmatch(name)}


def _keep_writes_local(cls: type, ckpt: Mapping[str, Any], source: str, kwargs: dict[str, Any]) -> None:
    """Put the no-write values of :func:`write_arguments` into ``kwargs`` (the caller's own values win), and refuse
    a ``data_dir`` (where to read) that is not a plain local path."""
    for name, value in write_arguments(cls).items():
        kwargs.setdefault(name, value)
    data_dir = (ckpt.get("datamodule_hyper_parameters") or {}).get("data_dir")
    if "data_dir" not in kwargs and isinstance(data_dir, str) and (
            "://" in data_dir or "::" in data_dir or "\0" in data_dir or re.match(r"^[A-Za-z][\w+.-]*:", data_dir)):
        raise CheckpointError(f"{source}: datamodule data_dir {data_dir!r} is not a plain local path; pass "
                              "data_dir=... to load_from_checkpoint")


class TrustedLoading:
    """Mixin for LightningModules and DataModules: ``load_from_checkpoint`` refuses a checkpoint whose
    hyper-parameters name code outside the allow-list, unless ``trust_checkpoint=True`` (or ``weights_only=False``,
    which trusts the file anyway)."""

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | os.PathLike | IO[bytes], map_location: Any = None,
                             hparams_file: str | os.PathLike | None = None, strict: bool | None = None,
                             weights_only: bool | None = None, trust_checkpoint: bool = False, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint`` on a checkpoint read once and checked first (see the module doc)."""
        if isinstance(checkpoint_path, str) and "://" in checkpoint_path:
            raise CheckpointError(f"{checkpoint_path} is a URL; download it and pass the local file")
        trusted = trust_checkpoint or weights_only is False
        if hasattr(checkpoint_path, "read"):
            data, name = checkpoint_path.read(), getattr(checkpoint_path, "name", "<file object>")
        else:
            data, name = None, str(checkpoint_path)
        ckpt = read_checkpoint(name, weights_only=not trusted, data=data, trusted=trusted,
                               unsafe_flag="trust_checkpoint=True")
        if map_location is None and torch.cuda.is_available():  # Lightning puts tensors back where they were saved
            return super().load_from_checkpoint(  # type: ignore[misc]
                io.BytesIO(data if data is not None else Path(name).read_bytes()), hparams_file=hparams_file,
                weights_only=weights_only if weights_only is not None else not trusted,
                **({"strict": strict} if strict is not None else {}),
                **cls._checked_arguments(ckpt, name, hparams_file, trusted, kwargs)[1])
        return cls.from_checkpoint_dict(ckpt, name, map_location, hparams_file, strict, trusted, **kwargs)

    @classmethod
    def from_checkpoint_dict(cls, ckpt: Mapping[str, Any], source: str, map_location: Any = None,
                             hparams_file: str | os.PathLike | None = None, strict: bool | None = None,
                             trusted: bool = False, **kwargs: Any) -> Any:
        """The module or DataModule of a checkpoint :func:`read_checkpoint` already parsed and checked (Lightning's
        ``load_from_checkpoint`` without its own ``torch.load``): hyper-parameters from the checkpoint, or from
        ``hparams_file``, updated by ``kwargs``; a module's weights loaded ``strict``ly unless told otherwise, on
        the CPU or ``map_location`` (a device or its name)."""
        from lightning.pytorch.core.saving import _load_state
        from lightning.pytorch.utilities.migration.utils import _pl_migrate_checkpoint

        hparams, kwargs = cls._checked_arguments(ckpt, source, hparams_file, trusted, kwargs)
        checkpoint = _pl_migrate_checkpoint(copy_containers(dict(ckpt)))
        if hparams is not None:
            checkpoint[cls.CHECKPOINT_HYPER_PARAMS_KEY] = hparams  # type: ignore[attr-defined]
        checkpoint.setdefault(cls.CHECKPOINT_HYPER_PARAMS_KEY, {}).update(kwargs)  # type: ignore[attr-defined]
        if issubclass(cls, LightningDataModule):
            return _load_state(cls, checkpoint, **kwargs)
        model = _load_state(cls, checkpoint, strict=strict, **kwargs)
        return model.to(torch.device(map_location)) if isinstance(map_location, (str, torch.device)) else model

    @classmethod
    def _checked_arguments(cls, ckpt: Mapping[str, Any], source: str, hparams_file: str | os.PathLike | None,
                           trusted: bool, kwargs: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """The hyper-parameters of ``hparams_file`` (None without one), checked like the checkpoint's unless
        ``trusted``, and ``kwargs`` with a DataModule's no-write arguments added."""
        kwargs = dict(kwargs)
        if isinstance(cls, type) and issubclass(cls, LightningDataModule):
            _keep_writes_local(cls, ckpt, source, kwargs)
        if hparams_file is None:
            return None, kwargs
        from lightning.pytorch.core.saving import load_hparams_from_tags_csv, load_hparams_from_yaml

        extension = str(hparams_file).rsplit(".", 1)[-1].lower()
        if extension not in ("csv", "yml", "yaml"):
            raise CheckpointError(f"hparams_file {hparams_file} must be a .csv, .yml or .yaml file")
        if extension != "csv" and os.path.isfile(hparams_file) and not trusted:
            # Lightning reads the file with yaml.full_load, which turns "!!python/name:os.system" into the
            # function itself: a value no string check sees. Refuse any tag that safe_load does not know.
            try:
                with open(hparams_file, encoding="utf-8") as handle:
                    yaml.safe_load(handle)
            except (yaml.YAMLError, UnicodeDecodeError) as err:
                raise CheckpointError(f"hparams_file {hparams_file} is not plain YAML ({str(err).splitlines()[0]}"
                                      "); loading it could build Python objects. If you trust this file, pass "
                                      "trust_checkpoint=True") from err
        hparams = (load_hparams_from_tags_csv if extension == "csv" else load_hparams_from_yaml)(hparams_file)
        if not trusted:
            check_trusted({"hyper_parameters": hparams}, str(hparams_file), "trust_checkpoint=True")
        return hparams, kwargs
