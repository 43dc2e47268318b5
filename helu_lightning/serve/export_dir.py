"""What ``helu-train serve`` reads from an export folder: the manifest's input contract and the model file to run.
Only JSON is parsed here; the folder may come from someone else, so nothing in it is executed."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["MODEL_FILES", "ExportFolder", "check_model_inputs", "int8_record", "read_export"]

MODEL_FILES = {"onnx": "model.onnx", "int8": "model.int8.onnx", "pt2": "model.pt2"}
MAX_MANIFEST_BYTES = 16 * 2**20
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
TEXT_INPUTS = ("input_ids", "token_type_ids", "attention_mask")
INT8_KEYS = ("method", "format", "weights", "activations", "calibration")


@dataclass(frozen=True)
class ExportFolder:
    """An export ready to serve: the model file, its kind (``onnx``/``int8``/``pt2``), input names, contract and,
    for ``int8``, how the file was quantized (the manifest's record)."""

    model_path: Path
    model: str
    inputs: list[str]
    contract: dict[str, Any]
    int8: dict[str, Any] | None = None

    @property
    def info(self) -> dict[str, Any]:
        """What ``/info`` shows: the input contract, the model file served and, for INT8, its method."""
        return {**self.contract, "model_file": self.model_path.name,
                **({"int8": self.int8} if self.int8 is not None else {})}

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
    required = {"image": ("input_size", "mean", "std"), "text": ("max_length",)}
    needed = required.get(kind) if isinstance(kind, str) else None
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
    if not bad and contract.get("crop") is not None and contract["crop"] != size[1:]:
        bad = ["crop"]  # the crop is what the model sees: any other size fails every request
    if not bad and contract.get("convert") is not None and contract["convert"] != ("L" if size[0] == 1 else "RGB"):
        bad = ["convert"]
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
        raise UserError("model.pt2 is read with torch.export.load, which may unpickle it and so can run code hidden "
                        "in a file from others; serve --model onnx (or int8), or add --trust_export for an export you "
                        "made yourself")
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
        dropped = (manifest.get("quantization") or {}) if model == "int8" else {}
        if isinstance(dropped, dict) and isinstance(dropped.get("guard"), dict) and not dropped["guard"].get("kept"):
            hint = (" (export dropped it: INT8 lost more validation accuracy than --int8_max_drop allowed; see the "
                    "manifest's quantization.validation)")
        raise UserError(f"{folder} has no {path.name}{hint}; choose --model from the files it holds")
    if contract["kind"] == "text" and not (folder / "hf" / "tokenizer.json").is_file():
        raise UserError(f"{folder}/hf/tokenizer.json is missing: the text model cannot tokenise requests; re-export "
                        "with --tokenizer NAME_OR_PATH")
    int8 = int8_record(manifest.get("quantization")) if model == "int8" else None
    return ExportFolder(path, model, _input_names(manifest.get("model"), contract["kind"], manifest_path), contract,
                        int8)


def int8_record(quantization: Any) -> dict[str, Any]:
    """How ``model.int8.onnx`` was quantized, from the manifest (method static or dynamic, QDQ format, calibration);
    ``{"method": "unknown"}`` for a manifest that does not say (exports from before static INT8 wrote dynamic)."""
    if not isinstance(quantization, dict) or quantization.get("method") not in ("static", "dynamic"):
        return {"method": "unknown"}
    return {key: quantization[key] for key in INT8_KEYS if key in quantization}


def _input_names(model: Any, kind: str, where: Path) -> list[str]:
    """The manifest's ``model.inputs`` (``["input"]`` when absent): one name for an image model, token columns for a
    text one; UserError for anything else."""
    fix = "re-export the checkpoint with helu-train export"
    if model is None:
        model = {}
    if not isinstance(model, dict):
        raise UserError(f"{where}: model {model!r} is not a JSON object; {fix}")
    names = model.get("inputs", ["input"])
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise UserError(f"{where}: model.inputs {names!r} is not a list of input names; {fix}")
    if kind == "image" and len(names) != 1:
        raise UserError(f"{where}: model.inputs {names!r} names {len(names)} inputs; an image model takes one; {fix}")
    if kind == "text" and not (set(names) <= set(TEXT_INPUTS) and len(set(names)) == len(names)):
        raise UserError(f"{where}: model.inputs {names!r} are not distinct tokenizer columns "
                        f"({', '.join(TEXT_INPUTS)}); {fix}")
    return names


def _check_pt2_opens(folder: ExportFolder) -> None:
    """UserError of one line when ``model.pt2`` (trusted with --trust_export) cannot be loaded: found before
    listening, not as a traceback in every worker."""
    import logging

    import torch

    logger = logging.getLogger("torch.export")  # it logs the failure's traceback as a warning before raising
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        torch.export.load(str(folder.model_path))
    except Exception as err:  # noqa: BLE001 - torch.export.load raises many types for a truncated or foreign file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise UserError(f"{folder.model_path} cannot be loaded by torch.export.load ({type(err).__name__}: {reason}); "
                        "re-export the checkpoint, or serve --model onnx") from None
    finally:
        logger.setLevel(level)


def check_model_inputs(folder: ExportFolder) -> None:
    """UserError unless the ONNX file's own inputs are the manifest's names, with the rank (and any fixed image size)
    the contract makes; run before listening, so a doctored manifest stops serve instead of failing every request.
    A ``model.pt2`` (the user's own, ``--trust_export``) is only checked to load."""
    if folder.model == "pt2":
        _check_pt2_opens(folder)
        return
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(folder.model_path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for any unreadable file
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise UserError(f"{folder.model_path} cannot be opened by onnxruntime ({reason}); re-export it") from err
    actual = {i.name: i.shape for i in session.get_inputs()}
    where = folder.model_path.parent / "manifest.json"
    if sorted(actual) != sorted(folder.inputs):
        raise UserError(f"{where}: model.inputs {folder.inputs} but {folder.model_path.name} takes "
                        f"{sorted(actual)}; re-export the checkpoint (the manifest does not belong to this model)")
    if folder.kind == "image":
        shape, want = actual[folder.inputs[0]], [None, *folder.contract["input_size"]]
        if len(shape) != 4 or any(isinstance(s, int) and w is not None and s != w for s, w in zip(shape, want)):
            raise UserError(f"{where}: input_size {folder.contract['input_size']} does not fit {folder.model_path.name}"
                            f"'s input of shape {shape}; re-export the checkpoint")
    elif any(len(shape) != 2 for shape in actual.values()):
        raise UserError(f"{folder.model_path.name} takes inputs of shapes {list(actual.values())}, not token columns "
                        "(batch, length); re-export the checkpoint")
