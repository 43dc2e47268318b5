"""INT8 accuracy of one run: its checkpoint rebuilt, HeLU swapped for ReLU (``export.to_relu``), written to ONNX
as export writes it (``export.graph.write_onnx``), quantized by the same method ``helu-train export --quantize int8``
picks (static QDQ calibrated on the training split for conv and MLP nets, dynamic for transformers), and both the
fp32 and the INT8 ONNX models scored on the same validation batches."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule

from helu_lightning.export import load_task, split_batch, to_relu
from helu_lightning.export.graph import onnx_feeds, write_onnx
from helu_lightning.export.quantize import CALIBRATION_BATCHES, calibration_feeds, choose_method, write_int8

__all__ = ["int8_accuracy"]


def int8_accuracy(checkpoint: str | Path, batches: Iterable[Any], output_dir: Path,
                  datamodule: LightningDataModule | None = None, method: str = "auto",
                  calibration_batches: int = CALIBRATION_BATCHES) -> dict[str, Any]:
    """fp32 and INT8 ONNX accuracy of ``checkpoint``'s ReLU-exported model on ``batches`` (inputs, labels), INT8
    made as export makes it (static INT8 calibrates on ``datamodule``'s training split)."""
    import onnxruntime as ort

    task = load_task(checkpoint)[0]
    plain, replaced = to_relu(task.model)
    method, _ = choose_method(plain, method)
    calibration, samples = None, 0
    if method == "static":
        if datamodule is None:
            raise ValueError("static INT8 needs the run's DataModule to calibrate on; pass datamodule")
        calibration, samples = calibration_feeds(datamodule, plain, calibration_batches)
    batches = list(batches)
    if not batches:
        raise ValueError("no validation batches to score the INT8 model on")
    first, _ = split_batch(batches[0], plain)
    output_dir.mkdir(parents=True, exist_ok=True)
    fp32_path, int8_path = output_dir / "model.onnx", output_dir / "model.int8.onnx"
    names = write_onnx(plain, first, fp32_path)
    how = write_int8(fp32_path, int8_path, method, names, calibration)
    sessions = {k: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for k, p in (("fp32", fp32_path), ("int8", int8_path))}
    correct = {"fp32": 0, "int8": 0}
    scored = 0
    for batch in batches:
        inputs, labels = split_batch(batch, plain)
        if labels is None:
            raise ValueError("validation batches carry no labels; INT8 accuracy needs them")
        feeds = onnx_feeds(names, inputs)
        for key, session in sessions.items():
            predicted = torch.from_numpy(session.run(None, feeds)[0]).argmax(dim=-1)
            correct[key] += int((predicted == labels).sum())
        scored += int(labels.shape[0])
    fp32, int8 = correct["fp32"] / scored, correct["int8"] / scored
    return {"metric": "accuracy", "samples": scored, "fp32": fp32, "int8": int8, "delta": int8 - fp32,
            "relu_layers": len(replaced), "method": how["method"],
            "calibration_samples": samples if method == "static" else None}
