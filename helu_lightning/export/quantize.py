"""Dynamic INT8 ONNX (weights int8, activations quantized per batch) and its validation metric beside fp32's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor, nn

from ..batches import split_batch
from .graph import onnx_feeds
from .loading import val_loader
from .verify import compare

__all__ = ["onnx_metric", "quantize_int8"]


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


def quantize_int8(folder: Path, dm: LightningDataModule | None, model: nn.Module,
                  inputs: Tensor | Mapping[str, Tensor], reference: Tensor, max_batches: int | None) -> dict[str, Any]:
    """Write ``model.int8.onnx`` from ``model.onnx``; report its distance to the eager model and, with validation
    data, the fp32 and INT8 metric."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(folder / "model.onnx"), str(folder / "model.int8.onnx"), weight_type=QuantType.QInt8)
    session = ort.InferenceSession(str(folder / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    int8 = torch.from_numpy(session.run(None, onnx_feeds(names, inputs))[0])
    result: dict[str, Any] = {"method": "onnxruntime.quantization.quantize_dynamic, QInt8 weights",
                              "max_abs_diff_vs_eager": compare(reference, int8)["max_abs_diff"]}
    if dm is None:
        result["validation"] = {"metric": None, "reason": "no validation data: the DataModule could not be rebuilt"}
        print("export: INT8 written; validation metric not measured (no DataModule; pass --data)")
        return result
    paths = {"fp32": folder / "model.onnx", "int8": folder / "model.int8.onnx"}
    result["validation"] = metric = onnx_metric(paths, dm, model, names, max_batches)
    if metric.get("metric"):
        print(f"export: validation {metric['metric']} on {metric['samples']} samples: fp32 {metric['fp32']:.4f}, "
              f"int8 {metric['int8']:.4f} (delta {metric['delta']:+.4f})")
    return result
