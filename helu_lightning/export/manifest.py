"""``manifest.json``: where an export came from, what it holds and how it was verified. Its ``exporter`` key is how
``--overwrite`` recognises a folder it may replace."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import math
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from ..activations import HeLU, NaiveHeLU

__all__ = ["EXPORTER", "MANIFEST", "build_manifest", "checkpoint_metrics", "file_hashes", "read_manifest",
           "sha256_file"]

MANIFEST = "manifest.json"
EXPORTER = "helu_lightning.export"


def _alphas(model: nn.Module) -> float | dict[str, float] | None:
    # Shortest decimal of the float32 buffer: 0.05, not 0.05000000074505806.
    values = {name: float(str(np.float32(m.alpha))) for name, m in model.named_modules()
              if isinstance(m, (HeLU, NaiveHeLU))}
    if not values:
        return None
    distinct = set(values.values())
    return distinct.pop() if len(distinct) == 1 else values


def plain(value: Any) -> Any:
    """JSON-safe copy: tensors become numbers or lists, unknown objects their repr."""
    if isinstance(value, Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def checkpoint_metrics(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint knows of its scores: epoch, step, and each callback's monitor / best / current score."""
    metrics: dict[str, Any] = {"epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")}
    keep = ("monitor", "best_model_score", "current_score", "best_model_path", "best_score", "wait_count",
            "stopped_epoch")
    callbacks = {}
    for key, state in (ckpt.get("callbacks") or {}).items():
        if isinstance(state, Mapping):
            picked = {k: plain(state[k]) for k in keep if k in state}
            if picked:
                callbacks[str(key)] = picked
    metrics["callbacks"] = callbacks
    return metrics


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` at any depth, by POSIX path relative to it (the manifest left out):
    what ``--overwrite`` may later delete."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.relative_to(folder).as_posix() != MANIFEST:
            hashes[path.relative_to(folder).as_posix()] = sha256_file(path)
    return hashes


def sha256_file(path: Path) -> str:
    """sha256 of one file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("helu-lightning", "torch", "lightning", "transformers", "onnx", "onnxruntime", "safetensors"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def build_manifest(*, source: Path, raw: bytes, ckpt: Mapping[str, Any], task: str, datamodule: str | None,
                   trained: nn.Module, plain_model: nn.Module, inputs: list[str], hf: bool, replaced: list[str],
                   verification: dict[str, Any], quantization: dict[str, Any] | None, formats: list[str],
                   files: dict[str, str], contents: dict[str, str],
                   contract: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of one export, JSON-safe; ``input`` is the contract a server needs (None when unknown)."""
    hparams = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if k != "_instantiator"}
    return plain({
        "exporter": EXPORTER,
        "source": {"checkpoint": str(source.resolve()), "sha256": hashlib.sha256(raw).hexdigest(),
                   "task": task, "datamodule": datamodule, "hyper_parameters": hparams},
        "model": {"class": f"{type(plain_model).__module__}.{type(plain_model).__qualname__}", "inputs": inputs,
                  "outputs": ["logits"], "dynamic_axes": {"batch": 0, **({"sequence": 1} if hf else {})}},
        "input": contract,
        "activation": {"replaced_with": "relu", "layers": replaced, "alpha": _alphas(trained)},
        "verification": verification,
        "metrics": checkpoint_metrics(ckpt),
        "quantization": quantization,
        "formats": formats,
        "files": files,
        "contents": contents,
        "versions": _versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a previous export in ``folder``, or None when ``folder`` holds no export of ours."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return None
    if manifest.get("exporter", EXPORTER) != EXPORTER or "source" not in manifest:
        return None
    return manifest
