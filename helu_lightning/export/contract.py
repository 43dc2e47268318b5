"""The input contract an export carries, so it serves raw inputs without this package: the DataModule's validation
transform as plain data (``input_config()``: size, resize/crop, mean/std, or the tokenisation) and the label names.
It goes into ``manifest.json`` (key ``input``), each ONNX file's ``metadata_props`` and the standalone ``model.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from torch import nn

__all__ = ["ONNX_KEYS", "input_contract", "name_hf_labels", "stamp_onnx"]

# metadata_props keys: the whole contract as JSON, plus timm-like flat keys for tools that read only those.
ONNX_KEYS = ("helu.input", "class_names", "input_size", "mean", "std", "interpolation", "resize", "crop")


def _hf_names(model: nn.Module) -> list[str] | None:
    """The label names in a Hugging Face config, unless they are its LABEL_<i> placeholders."""
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label)]
    return None if not names or names == [f"LABEL_{i}" for i in range(len(names))] else names


def input_contract(datamodule: LightningDataModule | None, model: nn.Module) -> dict[str, Any] | None:
    """The DataModule's ``input_config()`` with ``id2label``/``label2id``, or None when there is no DataModule or
    it cannot describe its transform (the manifest then says how to fix that)."""
    describe = getattr(datamodule, "input_config", None)
    if not callable(describe):
        return None
    contract = dict(describe())
    names = contract.get("class_names") or _hf_names(model)
    contract["class_names"] = list(names) if names else None
    if names:
        contract["id2label"] = {str(i): n for i, n in enumerate(names)}
        contract["label2id"] = {n: i for i, n in enumerate(names)}
    return contract


def name_hf_labels(model: nn.Module, contract: dict[str, Any] | None) -> None:
    """Give a Hugging Face model's config the contract's label names where it has only LABEL_<i> placeholders."""
    config = getattr(model, "config", None)
    names = (contract or {}).get("class_names")
    if config is None or not names or _hf_names(model) is not None or len(names) != getattr(config, "num_labels", 0):
        return
    config.id2label = dict(enumerate(names))
    config.label2id = {n: i for i, n in enumerate(names)}


def stamp_onnx(path: Path, contract: dict[str, Any]) -> None:
    """Write the contract into the ONNX file's ``metadata_props`` (graph and weights untouched)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    values = {"helu.input": contract, **{k: contract.get(k) for k in ONNX_KEYS[1:] if k in contract}}
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, str(path))
