"""One way to read a DataModule batch as (model inputs, labels), shared by the tasks, calibration and export.

Batches come as ``(images, labels)`` pairs, bare input tensors, or Hugging Face style mappings
(``input_ids``, ``attention_mask``, ..., ``labels``, and the example index ``idx``, which is no model input).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LABEL_KEYS", "NON_INPUT_KEYS", "call_model", "class_probabilities", "split_batch"]

LABEL_KEYS = ("labels", "label")
NON_INPUT_KEYS = (*LABEL_KEYS, "idx")


def _accepted_keywords(model: nn.Module) -> set[str] | None:
    """The keyword names ``model.forward`` takes, or None when it takes ``**kwargs`` (any name)."""
    parameters = inspect.signature(model.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def split_batch(batch: Any, model: nn.Module | None = None) -> tuple[Tensor | dict[str, Tensor], Tensor | None]:
    """``batch`` as (model inputs, labels or None). A mapping's inputs are its tensors other than labels and
    ``idx``; given ``model``, only the keywords its ``forward`` accepts are kept."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)) and batch:
        labels = batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None
        return batch[0], labels
    if isinstance(batch, Mapping):
        accepted = _accepted_keywords(model) if model is not None else None
        inputs = {k: v for k, v in batch.items() if k not in NON_INPUT_KEYS and isinstance(v, Tensor)
                  and (accepted is None or k in accepted)}
        labels = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        return inputs, labels
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} into model inputs and labels; "
                    "use (inputs, labels) tuples or mappings of tensors with a 'labels' key")


def call_model(model: nn.Module, inputs: Tensor | Mapping[str, Tensor]) -> Any:
    """``model(**inputs)`` for a mapping of inputs, ``model(inputs)`` otherwise."""
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def class_probabilities(logits: Tensor) -> Tensor:
    """Softmax over the last dimension; a row with any NaN or infinite logit becomes all NaN, so the prediction
    writers see it and refuse it (a -inf logit would otherwise pass as a plausible probability 0)."""
    probabilities = torch.softmax(logits, dim=-1)
    return probabilities.masked_fill(~torch.isfinite(logits).all(dim=-1, keepdim=True), float("nan"))
