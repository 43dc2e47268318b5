"""Hugging Face sequence classifiers with their feed-forward activations taken from an activation factory."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

from ..activations import HeLU, NaiveHeLU
from ..pretrained import LOCAL_MODELS, from_pretrained, resolve_pretrained
from ..registry import require_factory
from ..surgery import default_targets, replace_activations

__all__ = ["LOCAL_MODELS", "build_sequence_classifier", "resolve_pretrained"]

# Classification heads that AutoModelForSequenceClassification adds on top of a pre-trained body.
_HEAD_MODULES = ("classifier", "pre_classifier", "score")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _DropNewHeadReport(logging.Filter):
    """Drops Hugging Face's load report when it lists only the new classification head as MISSING: the head is
    trained next or replaced by a checkpoint's weights right after (``load_from_checkpoint``), so the "newly
    initialized" warning misleads. A report naming anything else is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        rows = [[cell.strip() for cell in _ANSI.sub("", line).split("|")] for line in message.splitlines()
                if line.count("|") >= 2 and not line.lstrip().startswith("Key")]
        return not rows or not all(row[1] == "MISSING" and row[0].split(".")[0] in _HEAD_MODULES for row in rows)


@contextlib.contextmanager
def _new_head_report_dropped() -> Iterator[None]:
    logger, drop = logging.getLogger("transformers.modeling_utils"), _DropNewHeadReport()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def build_sequence_classifier(
    num_labels: int,
    activation: Callable[[], nn.Module] | None,
    pretrained: str | None = None,
    model_config: dict[str, Any] | None = None,
    regression: bool = False,
    label_names: list[str] | None = None,
) -> nn.Module:
    """``AutoModelForSequenceClassification`` from ``pretrained`` (local path, alias or hub name) or, from
    scratch, from ``model_config`` (``{"model_type": "bert", "hidden_size": 256, ...}``); then every activation
    module of the transformer body (BERT: the FFN ``intermediate_act_fn``) is replaced by a fresh
    ``activation()`` (a zero-argument factory, e.g. ``activation_factory(spec)``). ``activation=None`` keeps the
    model's own (GELU for BERT). ``replace_activations`` sets the config key that names the activation
    (``hidden_act``, DistilBERT's ``activation``...) to its registry name, so ``save_pretrained`` and reload keep
    it (with helu_lightning imported); HeLU's settings go to ``config.helu_activation``.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if (pretrained is None) == (model_config is None):
        raise ValueError("give exactly one of pretrained (a local path or hub name of a model to fine-tune) or "
                         "model_config (a dict such as {'model_type': 'bert', 'hidden_size': 256} to train from "
                         f"scratch); got pretrained={pretrained!r}, model_config={model_config!r}")
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1 (1 for regression), got {num_labels}")
    head: dict[str, Any] = {"num_labels": num_labels,
                            "problem_type": "regression" if regression else "single_label_classification"}
    if label_names:
        if len(label_names) != num_labels:
            raise ValueError(f"label_names {label_names} has {len(label_names)} names for num_labels={num_labels}")
        head["id2label"] = dict(enumerate(label_names))
        head["label2id"] = {name: i for i, name in enumerate(label_names)}
    if pretrained is not None:
        with _new_head_report_dropped():
            model = from_pretrained(AutoModelForSequenceClassification, resolve_pretrained(pretrained), "pretrained",
                                    **head)
    else:
        options = dict(model_config)
        model_type = options.pop("model_type", "bert")
        config = AutoConfig.for_model(model_type, **options, **head)
        model = AutoModelForSequenceClassification.from_config(config)
    if activation is not None:
        factory = require_factory(activation, "build_sequence_classifier")
        targets = (*default_targets(), HeLU, NaiveHeLU)
        replace_activations(model.base_model, factory, targets=targets)
    return model.train()  # from_pretrained returns eval mode; Lightning keeps modes as found, dropout off
