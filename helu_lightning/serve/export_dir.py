"""What ``helu-train serve`` reads from an export folder: the manifest's input contract and the model file to run.
Only JSON is parsed here; the folder may come from someone else, so nothing in it is executed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["MODEL_FILES", "ExportFolder", "read_export"]

MODEL_FILES = {"onnx": "model.onnx", "int8": "model.int8.onnx", "pt2": "model.pt2"}
MAX_MANIFEST_BYTES = 16 * 2**20


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
        size = contract["input_size"]
        if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)
                and size[0] in (1, 3)):
            raise UserError(f"{where}: input_size {size!r} is not [channels (1 or 3), height, width]; {fix}")
    names = contract.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise UserError(f"{where}: class_names {names!r} is not a list of strings; {fix}")
    return contract


def read_export(folder: str | Path, model: str = "onnx") -> ExportFolder:
    """The export in ``folder`` with the model file ``model`` (onnx, int8 or pt2); UserError for anything missing."""
    folder = Path(folder)
    if model not in MODEL_FILES:
        raise UserError(f"unknown --model {model!r}; choose from {', '.join(MODEL_FILES)}")
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
