"""``GluePredictionWriter``: ``helu-train predict`` output as GLUE submission files (``CoLA.tsv``, ``MNLI-m.tsv``,
...; columns ``index`` and ``prediction``), ready to zip and upload to gluebenchmark.com.

Predictions are class ids, except label names for MNLI, QNLI and RTE (``entailment``, ...) and scores in [0, 5]
with three decimals for STS-B, as the GLUE server expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from ..data.glue import GlueTask
from ..io import atomic_write_text

__all__ = ["GluePredictionWriter", "format_predictions"]


def format_predictions(task: GlueTask, idx: torch.Tensor, predictions: torch.Tensor) -> str:
    """The text of one submission file: a header, then ``index<TAB>prediction`` rows sorted by index."""
    order = torch.argsort(idx)
    lines = ["index\tprediction"]
    for i, value in zip(idx[order].tolist(), predictions[order].tolist()):
        if task.is_regression:
            text = f"{min(5.0, max(0.0, value)):.3f}"
        elif task.submit_label_names:
            text = task.labels[int(value)]
        else:
            text = str(int(value))
        lines.append(f"{i}\t{text}")
    return "\n".join(lines) + "\n"


class GluePredictionWriter(BasePredictionWriter):
    """Write each predict dataloader's outputs to ``output_dir/<GLUE file name>`` (atomically) at epoch end.

    Needs a ``GlueClassifier`` (its ``spec`` names the task and labels) whose ``predict_step`` returns
    ``{"idx", "prediction"}``; the file names come from the task's test splits, in dataloader order.
    """

    def __init__(self, output_dir: str = "glue_predictions") -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)
        self.written: list[Path] = []

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions: Any,
                           batch_indices: Any) -> None:
        task: GlueTask | None = getattr(pl_module, "spec", None)
        if task is None:
            raise ValueError("GluePredictionWriter writes GLUE submissions and needs a GlueClassifier with a GLUE "
                             f"task; {type(pl_module).__name__} has none. Remove the callback for other tasks.")
        # One dataloader gives a flat list of batch outputs; several give one list per dataloader.
        per_loader = predictions if predictions and isinstance(predictions[0], list) else [predictions]
        files = [split.submission for split in task.test]
        if len(per_loader) != len(files):
            raise ValueError(f"GLUE {task.directory} has {len(files)} test file(s) {files} but predict ran "
                             f"{len(per_loader)} dataloader(s); use GlueDataModule for the predict data")
        self.written = []
        for name, outputs in zip(files, per_loader):
            idx = torch.cat([out["idx"].cpu() for out in outputs])
            values = torch.cat([out["prediction"].float().cpu() for out in outputs])
            self.written.append(atomic_write_text(self.output_dir / name, format_predictions(task, idx, values)))
