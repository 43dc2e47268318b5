"""INT8 ONNX that pays on CPU: static QDQ quantization calibrated on the task's own training batches (conv and MLP
nets), or dynamic quantization (transformers, where it measured as fast and closer to fp32), then an accuracy guard
on validation data.

Dynamic INT8 re-quantizes every activation per batch and, on conv nets, runs slower than fp32 (a CIFAR ResNet-18 at
batch 8, one thread: 4.4x fp32's time); static QDQ with ranges calibrated once runs at about half fp32's time. The
choice per model family and its measurement are in ``benchmarks/inference.py``.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor, nn

from ..batches import split_batch
from ..errors import UserError
from .graph import onnx_feeds
from .loading import val_loader
from .verify import compare, is_hf

__all__ = ["CALIBRATION_BATCHES", "INT8_METHODS", "MAX_DROP", "Int8AccuracyError", "calibration_feeds",
           "choose_method", "guard", "onnx_metric", "quantize_int8", "write_int8"]

INT8_METHODS = ("auto", "static", "dynamic")
CALIBRATION_BATCHES = 8  # a few batches fix the activation ranges; more cost calibration time, not accuracy
MAX_DROP = 0.01  # one point of accuracy, or 0.01 of Pearson r
CALIBRATE_METHOD = "MinMax"
# auto's choice for Hugging Face transformers, measured by benchmarks/inference.py (MiniLM-L6, one thread,
# benchmarks/results/inference_int8.txt): dynamic 1.60x / 1.41x fp32 speed at batch 1 / 8, static 1.48x / 1.49x, but
# dynamic kept fp32's prediction on 87% of BBC validation articles and static on 70%.
TRANSFORMER_METHOD = "dynamic"


class Int8AccuracyError(UserError):
    """The INT8 model lost more validation metric than allowed; the fp32 export was written without it."""


def choose_method(model: nn.Module, requested: str) -> tuple[str, str]:
    """The INT8 method for ``model`` (static or dynamic) and why: ``requested`` unless it is ``auto``, which takes
    static for conv and MLP nets and the measured faster method for transformers."""
    if requested not in INT8_METHODS:
        raise UserError(f"unknown --int8_method {requested!r}; choose from {', '.join(INT8_METHODS)}")
    if requested != "auto":
        return requested, f"--int8_method {requested}"
    if is_hf(model):
        return TRANSFORMER_METHOD, (f"auto: {TRANSFORMER_METHOD} for transformers (as fast as static, closer to "
                                    "fp32; measured)")
    return "static", "auto: static for conv and MLP nets (dynamic INT8 is slower than fp32 there)"


def calibration_feeds(dm: LightningDataModule, model: nn.Module, batches: int) -> tuple[list[Any], int]:
    """Up to ``batches`` training batches of ``dm`` as model inputs, and their sample count; UserError when the
    training split cannot be read, is empty, or holds NaN or infinite inputs (they would poison the ranges)."""
    name = type(dm).__name__
    try:
        dm.setup("fit")
        found = []
        with torch.random.fork_rng():  # the same shuffled batches on every export, the caller's RNG untouched
            torch.manual_seed(0)
            for index, batch in enumerate(dm.train_dataloader()):
                if index >= batches:
                    break
                found.append(split_batch(batch, model)[0])
    except UserError:
        raise
    except Exception as err:  # any DataModule failure becomes one line naming the DataModule and the fix
        raise UserError(f"static INT8 calibrates on {name}'s training split, which could not be read "
                        f"({type(err).__name__}: {err}); make the training data available, or pass "
                        "--int8_method dynamic") from err
    if not found:
        raise UserError(f"{name}'s training split gave no batch to calibrate static INT8 on; check the data, or "
                        "pass --int8_method dynamic")
    samples = 0
    for index, inputs in enumerate(found):
        tensors = inputs.values() if isinstance(inputs, Mapping) else [inputs]
        if any(t.is_floating_point() and not torch.isfinite(t).all() for t in tensors):
            raise UserError(f"calibration batch {index} of {name}'s training split holds NaN or infinite inputs; "
                            "static INT8 ranges would be meaningless: clean the data, or pass --int8_method dynamic")
        samples += int(next(iter(tensors)).shape[0])
    return found, samples


def write_int8(fp32: Path, int8: Path, method: str, names: Sequence[str], calibration: Sequence[Any] | None
               ) -> dict[str, Any]:
    """Write ``int8`` from the ONNX file ``fp32`` with ``method``; return what the manifest records of it.

    Static: onnxruntime's pre-processing (shape inference, graph optimisation), then QDQ with int8 per-channel
    weights (7-bit range) and uint8 activations whose ranges come from ``calibration`` (MinMax). Dynamic: int8 weights,
    activations quantized per batch at run time."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    if method == "dynamic":
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        return {"method": "dynamic", "tool": "onnxruntime.quantization.quantize_dynamic",
                "weights": "int8 per tensor", "activations": "uint8, quantized per batch at run time",
                "calibration": None}
    if not calibration:
        raise UserError("static INT8 needs calibration batches; pass --data package.module.DataModuleClass, or "
                        "--int8_method dynamic")

    class Reader(CalibrationDataReader):
        """The calibration batches as onnxruntime feeds, each read once."""

        def __init__(self) -> None:
            self.feeds: Iterator[dict[str, np.ndarray]] = (onnx_feeds(names, b) for b in calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="helu-int8-", dir=int8.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX shape inference and graph optimisation only: onnxruntime's symbolic shape inference gives up on the
        # dynamo-exported transformers (and leaves a temporary file in the working directory when it does).
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        # reduce_range: 7-bit weights, so uint8 x int8 products cannot saturate on CPUs without VNNI (AVX2): on
        # the digits CNN full-range weights lost 0.74 points there, 7-bit ones none.
        quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    return {"method": "static", "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "preprocessed": "onnxruntime.quantization.quant_pre_process", "weights": "int8 per channel, 7-bit range",
            "activations": "uint8 per tensor"}


def onnx_metric(paths: Mapping[str, Path], dm: LightningDataModule, model: nn.Module, names: Sequence[str],
                max_batches: int | None) -> dict[str, Any]:
    """Validation metric of each ONNX file over the same batches: accuracy, or Pearson r for one-output regression."""
    import onnxruntime as ort

    sessions = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    outputs: dict[str, list[Tensor]] = {k: [] for k in sessions}
    labels: list[Tensor] = []
    for index, batch in enumerate(val_loader(dm)):
        if max_batches is not None and index >= max_batches:
            break
        inputs, target = split_batch(batch, model)
        if target is None:
            return {"metric": None, "reason": "validation batches carry no labels"}
        feeds = onnx_feeds(names, inputs)
        for key, session in sessions.items():
            outputs[key].append(torch.from_numpy(session.run(None, feeds)[0]))
        labels.append(target)
    target = torch.cat(labels)
    result: dict[str, Any] = {"samples": int(target.shape[0])}
    for key, chunks in outputs.items():
        logits = torch.cat(chunks)
        if logits.dim() == 2 and logits.shape[1] > 1:
            result["metric"] = "accuracy"
            result[key] = (logits.argmax(dim=1) == target).double().mean().item()
        else:
            result["metric"] = "pearson"
            result[key] = torch.corrcoef(torch.stack([logits.flatten().double(), target.double()]))[0, 1].item()
    if "fp32" in result and "int8" in result:
        result["delta"] = result["int8"] - result["fp32"]
    return result


def guard(validation: Mapping[str, Any], max_drop: float) -> str | None:
    """One line saying the INT8 model lost more than ``max_drop`` of the validation metric, or None when it did not
    (or when nothing was measured). A NaN metric (e.g. Pearson r of constant outputs) counts as a loss."""
    if not validation.get("metric"):
        return None
    drop = validation["fp32"] - validation["int8"]
    if not (math.isnan(drop) or drop > max_drop):
        return None
    unit, scale = ("points", 100.0) if validation["metric"] == "accuracy" else ("", 1.0)
    return (f"INT8 lost {drop * scale:.2f}{' ' + unit if unit else ''} of validation {validation['metric']} "
            f"(fp32 {validation['fp32']:.4f}, int8 {validation['int8']:.4f} on {validation['samples']} samples; "
            f"limit {max_drop * scale:g}{' ' + unit if unit else ''}): model.int8.onnx was not kept; pass "
            "--int8_max_drop to allow more, --keep_int8 to keep it anyway, or --int8_method to try the other method")


def quantize_int8(folder: Path, dm: LightningDataModule | None, model: nn.Module,
                  inputs: Tensor | Mapping[str, Tensor], reference: Tensor, max_batches: int | None,
                  method: str = "dynamic", calibration: Sequence[Any] | None = None,
                  calibration_samples: int = 0) -> dict[str, Any]:
    """Write ``model.int8.onnx`` from ``model.onnx`` with ``method``; report how, its distance to the eager model
    and, with validation data, the fp32 and INT8 metric on the same batches."""
    import onnxruntime as ort

    names = [i.name for i in ort.InferenceSession(str(folder / "model.onnx"),
                                                  providers=["CPUExecutionProvider"]).get_inputs()]
    result = write_int8(folder / "model.onnx", folder / "model.int8.onnx", method, names, calibration)
    if method == "static":
        result["calibration"] = {"method": CALIBRATE_METHOD, "split": "train", "batches": len(calibration or []),
                                 "samples": calibration_samples}
    session = ort.InferenceSession(str(folder / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    int8 = torch.from_numpy(session.run(None, onnx_feeds(names, inputs))[0])
    result["max_abs_diff_vs_eager"] = compare(reference, int8)["max_abs_diff"]
    if dm is None:
        result["validation"] = {"metric": None, "reason": "no validation data: the DataModule could not be rebuilt"}
        print("export: INT8 written; validation metric not measured (no DataModule; pass --data)")
        return result
    paths = {"fp32": folder / "model.onnx", "int8": folder / "model.int8.onnx"}
    result["validation"] = metric = onnx_metric(paths, dm, model, names, max_batches)
    if metric.get("metric"):
        print(f"export: {method} INT8, validation {metric['metric']} on {metric['samples']} samples: fp32 "
              f"{metric['fp32']:.4f}, int8 {metric['int8']:.4f} (delta {metric['delta']:+.4f})")
    return result
