"""What ``helu-train serve`` reads from an export folder: the manifest's input contract and the model file to run.
Only JSON is parsed here; the folder may come from someone else, so nothing in it is executed."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["MODEL_FILES", "ExportFolder", "read_export"]

MODEL_FILES = {"onnx": "model.onnx", "int8": "model.int8.onnx", "pt2": "model.pt2"}
MAX_MANIFEST_BYTES = 16 * 2**20
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class ExportFolder:
    """An export ready to serve: the model file, its kind (``onnx``/``int8``/``pt2``), input names and contract."""

    model_path: Path
    model: str
    inputs: list[str]
    contract: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.contract["kind"]

    @property
    def class_names(self) -> list[str] | None:
        return self.contract.get("class_names")


def _check_contract(contract: Any, where: Path) -> dict[str, Any]:
    """The contract when it has what serving needs, else UserError naming the missing key and the fix."""
    fix = "re-export the checkpoint with this version of helu-train export (pass --data if it says so)"
    if not isinstance(contract, dict):
        raise UserError(f"{where} records no input contract (preprocessing and label names); {fix}")
    kind = contract.get("kind")
    needed = {"image": ("input_size", "mean", "std"), "text": ("max_length",)}.get(kind)
    if needed is None:
        raise UserError(f"{where} has input kind {kind!r}; helu-train serve serves 'image' or 'text' models")
    missing = [key for key in needed if key not in contract]
    if missing:
        raise UserError(f"{where}'s input contract lacks {', '.join(missing)}; {fix}")
    if kind == "image":
        _check_image(contract, where, fix)
    elif not (_count(contract["max_length"]) and isinstance(contract.get("text_pair", False), bool)):
        raise UserError(f"{where}: max_length {contract['max_length']!r} is not a positive integer; {fix}")
    names = contract.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise UserError(f"{where}: class_names {names!r} is not a list of strings; {fix}")
    return contract


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 2**16


def _numbers(value: Any, length: int, positive: bool) -> bool:
    return (isinstance(value, list) and len(value) == length and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
        for v in value))


def _check_image(contract: dict[str, Any], where: Path, fix: str) -> None:
    """Every value the image preprocessing reads has the type and range it needs (the manifest may come from others)."""
    size = contract["input_size"]
    if not (isinstance(size, list) and len(size) == 3 and all(_count(v) for v in size) and size[0] in (1, 3)):
        raise UserError(f"{where}: input_size {size!r} is not [channels (1 or 3), height, width]; {fix}")
    checks = {
        "mean": _numbers(contract["mean"], size[0], positive=False),
        "std": _numbers(contract["std"], size[0], positive=True),
        "resize": contract.get("resize") is None or _count(contract["resize"]),
        "crop": contract.get("crop") is None or (isinstance(contract["crop"], list) and len(contract["crop"]) == 2
                                                 and all(_count(v) for v in contract["crop"])),
        "interpolation": contract.get("interpolation", "bilinear") in INTERPOLATIONS,
        "convert": contract.get("convert") in (None, "L", "RGB"),
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise UserError(f"{where}: the input contract's {', '.join(f'{k}={contract.get(k)!r}' for k in bad)} cannot "
                        f"be applied; {fix}")


def read_export(folder: str | Path, model: str = "onnx", trust_export: bool = False) -> ExportFolder:
    """The export in ``folder`` with the model file ``model`` (onnx, int8 or pt2); UserError for anything missing.
    ``model.pt2`` is refused unless ``trust_export``: torch.export.load may unpickle it, which can run code."""
    folder = Path(folder)
    if model not in MODEL_FILES:
        raise UserError(f"unknown --model {model!r}; choose from {', '.join(MODEL_FILES)}")
    if model == "pt2" and not trust_export:
        raise UserError("model.pt2 is read with torch.load, which can run code hidden in a file from others; serve "
                        "--model onnx (or int8), or add --trust_export for an export you made yourself")
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"{folder} holds no manifest.json; point --export_dir at a folder written by helu-train export")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise UserError(f"{manifest_path} is over {MAX_MANIFEST_BYTES // 2**20} MB; it is not an export's manifest")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{manifest_path} is not valid JSON ({err}); re-export the checkpoint") from err
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path} is not a JSON object; re-export the checkpoint")
    contract = _check_contract(manifest.get("input"), manifest_path)
    path = folder / MODEL_FILES[model]
    if not path.is_file():
        hint = " (export with --quantize int8)" if model == "int8" else ""
        raise UserError(f"{folder} has no {path.name}{hint}; choose --model from the files it holds")
    if contract["kind"] == "text" and not (folder / "hf" / "tokenizer.json").is_file():
        raise UserError(f"{folder}/hf/tokenizer.json is missing: the text model cannot tokenise requests; re-export "
                        "with --tokenizer NAME_OR_PATH")
    inputs = (manifest.get("model") or {}).get("inputs") or ["input"]
    return ExportFolder(path, model, [str(n) for n in inputs], contract)
