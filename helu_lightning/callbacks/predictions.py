"""``helu-train predict`` writers: GLUE submission files (``GluePredictionWriter``) and a CSV of class predictions
for vision and text classifiers (``PredictionWriter``).

Under DDP each rank predicts its own shard; the writers gather every rank's rows (Lightning's
``strategy.all_gather``), keep one row per example index, sort by index and write once, on rank zero, atomically.
A row whose prediction is NaN or inf (a diverged model) stops predict with an error naming its example index, before
any file is written. A file is replaced only when predict recorded writing it (``owned_files``: name and sha256),
checked before the first batch: a user's CSV is never overwritten, whatever its first line.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from ..data.glue import GlueTask
from ..errors import UserError
from ..local_paths import refuse_remote
from ..owned_files import refuse_foreign, write_owned

__all__ = ["GluePredictionWriter", "PredictionWriter", "check_finite", "format_predictions", "gather_rows"]


def _unique_by_index(index: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """Rows sorted by index, one per index (the first seen: padded samplers repeat rows)."""
    order = torch.argsort(index, stable=True)
    index, values = index[order], values[order]
    keep = torch.ones_like(index, dtype=torch.bool)
    keep[1:] = index[1:] != index[:-1]
    return index[keep], values[keep]


def gather_rows(trainer: Trainer, index: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """Every rank's ``(index, values)`` rows, de-duplicated by index and sorted; each rank must call it.

    Ranks may hold different row counts, so rows are padded to the largest count for ``all_gather`` and cut back.
    """
    if trainer.world_size > 1:
        strategy = trainer.strategy
        device = strategy.root_device
        counts = strategy.all_gather(torch.tensor([len(index)], device=device)).flatten().tolist()
        size = max(counts)

        def padded(rows: Tensor) -> Tensor:
            return torch.cat([rows, rows.new_zeros((size - len(rows), *rows.shape[1:]))]).to(device)

        all_index, all_values = strategy.all_gather(padded(index)), strategy.all_gather(padded(values))
        index = torch.cat([all_index[rank, :count] for rank, count in enumerate(counts)]).cpu()
        values = torch.cat([all_values[rank, :count] for rank, count in enumerate(counts)]).cpu()
    return _unique_by_index(index, values)


def _per_loader(predictions: Any, batch_indices: Any) -> list[tuple[list, list]]:
    """``(outputs, batch indices)`` per predict dataloader: Lightning flattens the lists when there is only one."""
    several = bool(predictions) and isinstance(predictions[0], list)
    outputs = predictions if several else [predictions]
    indices = batch_indices if batch_indices and len(batch_indices) == len(outputs) else [[] for _ in outputs]
    return list(zip(outputs, indices))


def format_predictions(task: GlueTask, idx: Tensor, predictions: Tensor) -> str:
    """The text of one submission file: a header, then ``index<TAB>prediction`` rows sorted by index."""
    order = torch.argsort(idx)
    lines = ["index\tprediction"]
    for i, value in zip(idx[order].tolist(), predictions[order].tolist()):
        if not math.isfinite(value):
            raise UserError(f"GLUE {task.directory}: the prediction for example index {i} is {value}, not a finite "
                            "number; a submission file holds finite predictions only (a NaN STS-B score is no "
                            "0.000): predict with an earlier checkpoint, the model diverged")
        if task.is_regression:
            text = f"{min(5.0, max(0.0, value)):.3f}"
        elif task.submit_label_names:
            text = task.labels[int(value)]
        else:
            text = str(int(value))
        lines.append(f"{i}\t{text}")
    return "\n".join(lines) + "\n"


def check_finite(index: Tensor, values: Tensor, path: Path | str) -> None:
    """UserError naming the first example whose prediction holds NaN or inf (and how many do), so a diverged model
    or a checkpoint with broken weights never writes a plausible-looking file; called before anything is written."""
    finite = torch.isfinite(values.reshape(len(values), -1)).all(dim=1) if len(values) else torch.ones(0, dtype=bool)
    if bool(finite.all()):
        return
    bad = index[~finite]
    raise UserError(f"the prediction for example index {int(bad[0])} is not finite (NaN or inf logits), as are "
                    f"{len(bad) - 1} other row(s) of {len(values)}; nothing was written to {path}. The model diverged "
                    "or its checkpoint holds NaN/inf weights: predict with an earlier checkpoint")


PREDICT_FIX = ("move the file away, or write elsewhere (--trainer.default_root_dir, PredictionWriter output_file or "
               "GluePredictionWriter output_dir)")


def _replace_problem(path: Path) -> str | None:
    """Why ``path`` may not be replaced: it exists and is not a file predict recorded writing (owned_files)."""
    try:
        refuse_foreign(path.parent, [path.name], "predict", PREDICT_FIX)
    except UserError as err:
        return str(err)
    return None


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, recorded as predict's own (so the next predict may replace it)."""
    write_owned(path.parent, path.name, text.encode("utf-8"), "predict", PREDICT_FIX)


def _check_replaceable(trainer: Trainer, paths: Sequence[Path]) -> None:
    """Refuse, on every rank alike, to overwrite a file that a previous predict did not write."""
    problem = next(filter(None, (_replace_problem(path) for path in paths)), None) \
        if trainer.is_global_zero else None
    problem = trainer.strategy.broadcast(problem, src=0)
    if problem:
        raise UserError(problem)


class GluePredictionWriter(BasePredictionWriter):
    """Write each predict dataloader's outputs to ``output_dir/<GLUE file name>`` (atomically) at epoch end.

    ``CoLA.tsv``, ``MNLI-m.tsv``, ...; columns ``index`` and ``prediction``, ready to zip and upload to
    gluebenchmark.com. Predictions are class ids, except label names for MNLI, QNLI and RTE (``entailment``, ...)
    and scores in [0, 5] with three decimals for STS-B, as the GLUE server expects. Needs a ``GlueClassifier``
    (its ``spec`` names the task and labels) whose ``predict_step`` returns ``{"idx", "prediction"}``.
    """

    def __init__(self, output_dir: str = "glue_predictions") -> None:
        super().__init__(write_interval="epoch")
        refuse_remote(output_dir, "GluePredictionWriter output_dir")
        self.output_dir = Path(output_dir)
        self.written: list[Path] = []

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Before any batch is predicted: a submission file of the user's in ``output_dir`` stops predict."""
        task: GlueTask | None = getattr(pl_module, "spec", None)
        if task is not None:
            _check_replaceable(trainer, [self.output_dir / split.submission for split in task.test])

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions: Any,
                           batch_indices: Any) -> None:
        task: GlueTask | None = getattr(pl_module, "spec", None)
        if task is None:
            raise UserError("GluePredictionWriter writes GLUE submissions and needs a GlueClassifier with a GLUE "
                            f"task; {type(pl_module).__name__} has none. Use PredictionWriter for other tasks.")
        loaders = _per_loader(predictions, batch_indices)
        files = [split.submission for split in task.test]
        if len(loaders) != len(files):
            raise UserError(f"GLUE {task.directory} has {len(files)} test file(s) {files} but predict ran "
                            f"{len(loaders)} dataloader(s); use GlueDataModule for the predict data")
        self.written = []
        _check_replaceable(trainer, [self.output_dir / name for name in files])
        rows = []
        for name, (outputs, _) in zip(files, loaders):
            idx = torch.cat([out["idx"].cpu() for out in outputs])
            values = torch.cat([_checked_prediction(out) for out in outputs])
            idx, values = gather_rows(trainer, idx, values)
            check_finite(idx, values, self.output_dir / name)
            rows.append((self.output_dir / name, idx, values))
        for path, idx, values in rows:  # all checked first: no submission file is written when one row is bad
            if trainer.is_global_zero:
                _write(path, format_predictions(task, idx, values))
                rank_zero_info(f"Predictions for {len(idx)} examples written to {path}")
            self.written.append(path)
        trainer.strategy.barrier("GluePredictionWriter")


def _checked_prediction(output: Mapping[str, Tensor]) -> Tensor:
    """The batch's predictions as floats, NaN where the row's probabilities (when given) are not finite: a class id
    taken by argmax from NaN logits looks like any other."""
    prediction = output["prediction"].float().cpu()
    if "probabilities" in output:
        broken = ~torch.isfinite(output["probabilities"].float().cpu()).all(dim=-1)
        prediction = prediction.masked_fill(broken, float("nan"))
    return prediction


class PredictionWriter(BasePredictionWriter):
    """Write class predictions of a vision or text classifier to a CSV file at the end of ``predict``.

    Columns: ``index`` (the example's position in the predict set, or its ``idx`` when batches carry one, as text
    batches do), ``label`` (the class name where the DataModule has ``class_names``, else the class id) and
    ``probability``, then ``label_2, probability_2 ... label_k, probability_k`` for the runners-up (``top_k``).
    The file is ``output_file`` (default ``<trainer.default_root_dir>/predictions.csv``); with several predict
    dataloaders, ``predictions_<n>.csv``. Needs ``predict_step`` to return class probabilities, as a tensor or
    under the key ``probabilities`` (``VisionClassifier`` and ``GlueClassifier(task="classification")`` do).
    """

    def __init__(self, output_file: str | None = None, top_k: int = 5) -> None:
        super().__init__(write_interval="epoch")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise UserError(f"PredictionWriter top_k must be an integer >= 1 (e.g. 5), got {top_k!r}")
        refuse_remote(output_file, "PredictionWriter output_file")
        self.output_file = None if output_file is None else Path(output_file)
        self.top_k = top_k
        self.written: list[Path] = []

    def _path(self, trainer: Trainer, loader: int, loaders: int) -> Path:
        path = self.output_file or Path(trainer.default_root_dir) / "predictions.csv"
        return path if loaders == 1 else path.with_name(f"{path.stem}_{loader}{path.suffix}")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Before any batch is predicted: a CSV of the user's where predictions go stops predict."""
        loaders = max(1, len(trainer.num_predict_batches))
        _check_replaceable(trainer, [self._path(trainer, n, loaders) for n in range(loaders)])

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions: Any,
                           batch_indices: Any) -> None:
        names = getattr(trainer.datamodule, "class_names", None)
        loaders = _per_loader(predictions, batch_indices)
        self.written = []
        _check_replaceable(trainer, [self._path(trainer, n, len(loaders)) for n in range(len(loaders))])
        rows = []
        for number, (outputs, indices) in enumerate(loaders):
            index, probabilities = gather_rows(trainer, *self._rows(trainer, outputs, indices))
            check_finite(index, probabilities, self._path(trainer, number, len(loaders)))
            rows.append((self._path(trainer, number, len(loaders)), index, probabilities))
        for path, index, probabilities in rows:  # all checked first: no file is written when one row is bad
            if trainer.is_global_zero:
                _write(path, self.to_csv(index, probabilities, names))
                rank_zero_info(f"Predictions for {len(index)} examples written to {path}")
            self.written.append(path)
        trainer.strategy.barrier("PredictionWriter")

    @staticmethod
    def _rows(trainer: Trainer, outputs: list, indices: list) -> tuple[Tensor, Tensor]:
        """(index, probabilities) of one dataloader's batch outputs on this rank."""
        if not outputs:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, 0)
        if isinstance(outputs[0], Mapping):
            if "probabilities" not in outputs[0]:
                raise UserError("PredictionWriter needs class probabilities, but predict_step returned keys "
                                f"{sorted(outputs[0])}; for GLUE submissions use GluePredictionWriter")
            probabilities = torch.cat([out["probabilities"].float().cpu() for out in outputs])
            if "idx" in outputs[0]:
                return torch.cat([out["idx"].cpu() for out in outputs]).long(), probabilities
        else:
            probabilities = torch.cat([out.float().cpu() for out in outputs])
        if indices:
            return torch.tensor([i for batch in indices for i in batch], dtype=torch.long), probabilities
        if trainer.world_size > 1:
            raise UserError("PredictionWriter cannot tell which examples each DDP rank predicted: use a plain "
                            "DataLoader for predict, or return {'idx': ..., 'probabilities': ...} from predict_step")
        return torch.arange(len(probabilities)), probabilities

    def to_csv(self, index: Tensor, probabilities: Tensor, names: Sequence[str] | None = None) -> str:
        """The CSV text: a header and one row per example, classes ranked by probability."""
        k = min(self.top_k, probabilities.shape[1]) if probabilities.ndim == 2 else 1
        header = ["index", "label", "probability"]
        header += [f"{column}_{rank}" for rank in range(2, k + 1) for column in ("label", "probability")]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        check_finite(index, probabilities, "the predictions CSV")
        if len(index):
            top = torch.topk(probabilities, k, dim=1)
            for i, values, classes in zip(index.tolist(), top.values.tolist(), top.indices.tolist()):
                row: list[Any] = [i]
                for value, label in zip(values, classes):
                    row += [names[label] if names is not None else label, f"{value:.6f}"]
                writer.writerow(row)
        return buffer.getvalue()
