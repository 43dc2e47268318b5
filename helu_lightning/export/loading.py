"""Rebuilding a checkpoint's task and DataModule for export, under the checkpoint trust rules of
:mod:`helu_lightning.checkpoints` (no import path outside the allow-list unless the file is trusted)."""

from __future__ import annotations

import importlib
import inspect
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn

from ..checkpoints import CheckpointError, TrustedLoading, is_allowed_import_path, read_checkpoint

__all__ = ["TRUST_FLAG", "load_checkpoint", "load_datamodule", "load_task", "val_loader"]

TRUST_FLAG = "--trust_checkpoint"
KNOWN_TASKS = ("helu_lightning.tasks.vision.VisionClassifier", "helu_lightning.tasks.glue.GlueClassifier")


def load_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> tuple[dict[str, Any], bytes]:
    """Read a Lightning checkpoint once (checked unless ``trust_checkpoint``); return it and its raw bytes."""
    path = Path(path)
    try:
        data = path.read_bytes() if path.is_file() else None  # read once: hashed, then loaded from memory
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror}); check its permissions") from err
    ckpt = read_checkpoint(path, weights_only=not trust_checkpoint, unsafe_flag=TRUST_FLAG, data=data,
                           trusted=trust_checkpoint)
    return ckpt, data


def _import_class(class_path: str, base: type, source: Path, trusted: bool) -> type:
    """The class at ``class_path``; off the allow-list it is imported only for a trusted file or an explicit flag."""
    flag = "--task" if base is LightningModule else "--data"
    if not trusted and not is_allowed_import_path(class_path):
        raise CheckpointError(f"{class_path!r} (for {source}) is not a helu_lightning class; importing it runs its "
                              f"code, so pass {TRUST_FLAG} if you trust the checkpoint")
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise CheckpointError(f"class {class_path!r} for {source} cannot be imported ({err}); "
                              f"pass {flag} with an importable class path") from err
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise CheckpointError(f"{class_path!r} is not a {base.__name__} subclass; pass the class that wrote {source}")
    return cls


def _guess_task(hparams: Mapping[str, Any], source: Path) -> str:
    """The one built-in task whose ``__init__`` takes exactly the stored hyper-parameters."""
    keys = {k for k in hparams if not k.startswith("_")}
    matches = []
    for class_path in KNOWN_TASKS:
        module_name, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
        params = inspect.signature(cls.__init__).parameters
        names = {n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        required = {n for n in names if params[n].default is inspect.Parameter.empty}
        if keys <= names and required <= keys:
            matches.append(class_path)
    if len(matches) != 1:
        found = f"it matches {matches}" if matches else "no built-in task takes its hyper-parameters"
        raise CheckpointError(f"cannot tell which LightningModule wrote {source} ({found}; stored keys: "
                              f"{sorted(keys)}); pass --task package.module.TaskClass")
    return matches[0]


def _rebuild(cls: type, ckpt: Mapping[str, Any], data: bytes, source: Path, trusted: bool) -> Any:
    """The class rebuilt from the checkpoint already read and checked (no second parse); classes without the
    trust mixin get plain Lightning on the same bytes."""
    if isinstance(cls, type) and issubclass(cls, TrustedLoading):
        return cls.from_checkpoint_dict(ckpt, str(source), map_location="cpu", trusted=trusted)
    return cls.load_from_checkpoint(io.BytesIO(data), map_location="cpu", weights_only=not trusted)


def load_task(ckpt_path: str | Path, task: str | None = None, trust_checkpoint: bool = False
              ) -> tuple[LightningModule, dict[str, Any], bytes, str]:
    """Rebuild the LightningModule of a checkpoint; return it, the raw checkpoint, its bytes and its class path."""
    path = Path(ckpt_path)
    ckpt, data = load_checkpoint(path, trust_checkpoint)
    hparams = ckpt.get("hyper_parameters") or {}
    class_path = task or hparams.get("_class_path") or _guess_task(hparams, path)
    cls = _import_class(str(class_path), LightningModule, path, trusted=trust_checkpoint or bool(task))
    try:
        module = _rebuild(cls, ckpt, data, path, trust_checkpoint)
    except CheckpointError:
        raise
    except Exception as err:  # any rebuild failure is reported with the class and file it concerns
        raise CheckpointError(f"could not rebuild {class_path} from {path}: {type(err).__name__}: {err}; "
                              "check --task names the class that wrote this checkpoint") from err
    if not (isinstance(getattr(module, "model", None), nn.Module) and callable(getattr(module, "example_input", None))):
        raise CheckpointError(f"{class_path} does not expose `model` (nn.Module) and `example_input(batch_size)`, "
                              "which export needs; add them to the task")
    return module.eval(), ckpt, data, str(class_path)


def load_datamodule(data: bytes, ckpt: Mapping[str, Any], explicit: str | None, trust_checkpoint: bool,
                    source: Path) -> tuple[LightningDataModule | None, str]:
    """The checkpoint's DataModule, set up for validation, or None and the reason it could not be rebuilt."""
    hparams = ckpt.get("datamodule_hyper_parameters") or {}
    class_path = explicit or hparams.get("_class_path")
    if class_path is None:
        return None, "the checkpoint names no DataModule class; pass --data package.module.DataModuleClass"
    cls = _import_class(str(class_path), LightningDataModule, source, trusted=trust_checkpoint or bool(explicit))
    try:
        dm = _rebuild(cls, ckpt, data, source, trust_checkpoint)
        dm.setup("validate")
        next(iter(val_loader(dm)))
    except CheckpointError:
        raise
    except Exception as err:  # missing data on this machine is normal: fall back to example_input, say why
        return None, f"{class_path} could not load validation data: {type(err).__name__}: {err}"
    return dm, str(class_path)


def val_loader(dm: LightningDataModule) -> Any:
    """The DataModule's (first) validation dataloader; raise ValueError when it has none."""
    loader = dm.val_dataloader()
    if isinstance(loader, (list, tuple)):
        if not loader:
            raise ValueError(f"{type(dm).__name__} has no validation split (val_fraction 0?)")
        loader = loader[0]
    return loader
