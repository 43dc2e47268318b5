"""Knowledge distillation for the text tasks: ``distill: {teacher, temperature, weight}`` adds the KL divergence
from a frozen teacher's softened logits to the training loss (GELU -> ReLU conversion keeps the GELU model's
behaviour this way).

The teacher is a local model path, never code: a Hugging Face model folder (``save_pretrained``, e.g. the ``hf/``
folder of ``helu-train export``; read without remote code) or a ``GlueClassifier`` checkpoint (read with the
checkpoint allow-list). It stays in eval mode without gradients and is not a submodule, so it never enters the
student's ``state_dict``, checkpoint or optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoints import CheckpointError
from ..errors import UserError
from ..pretrained import from_pretrained

__all__ = ["DISTILL_DEFAULTS", "DistillError", "check_distill", "check_teacher", "distillation_loss", "load_teacher",
           "teacher_logits"]

DISTILL_DEFAULTS = {"temperature": 2.0, "weight": 0.5}


class DistillError(UserError):
    """A ``distill`` option or teacher that cannot be used."""


def check_distill(distill: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``distill`` with defaults filled in (temperature 2, weight 0.5), or None; DistillError naming a bad value."""
    if distill is None:
        return None
    if not isinstance(distill, Mapping):
        raise DistillError(f"distill must be a mapping such as {{teacher: runs/gelu/hf, temperature: 2, weight: 0.5}},"
                           f" got {distill!r}")
    unknown = sorted(set(distill) - {"teacher", *DISTILL_DEFAULTS})
    if unknown:
        raise DistillError(f"distill does not take {unknown}; its keys are teacher, temperature and weight")
    teacher = distill.get("teacher")
    if not isinstance(teacher, str) or not teacher.strip():
        raise DistillError(f"distill.teacher must be a local model path (a Hugging Face model folder or a .ckpt), "
                           f"got {teacher!r}")
    if "://" in teacher:
        raise DistillError(f"distill.teacher {teacher!r} is a URL; download the model and give its local path")
    options = {**DISTILL_DEFAULTS, **{k: v for k, v in distill.items() if k != "teacher"}}
    temperature, weight = options["temperature"], options["weight"]
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise DistillError(f"distill.temperature must be a positive number such as 2, got {temperature!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1:
        raise DistillError(f"distill.weight is the distillation share of the loss, in (0, 1] (e.g. 0.5), "
                           f"got {weight!r}")
    return {"teacher": teacher, "temperature": float(temperature), "weight": float(weight)}


def load_teacher(path: str, task_class: Any) -> nn.Module:
    """The teacher at local ``path`` (HF model folder, or a checkpoint of ``task_class``, the student's task, read by
    its allow-listed ``load_from_checkpoint``), frozen and in eval mode."""
    location = Path(path).expanduser()
    if location.is_dir():
        if not (location / "config.json").is_file():
            raise DistillError(f"distill.teacher {path} is a folder without config.json; give a folder written by "
                               "save_pretrained (e.g. the hf/ folder of helu-train export) or a .ckpt file")
        from transformers import AutoModelForSequenceClassification

        try:
            model = from_pretrained(AutoModelForSequenceClassification, str(location), "distill.teacher",
                                    local_files_only=True, trust_remote_code=False)
        except UserError as err:
            raise DistillError(str(err)) from None
        except OSError as err:
            raise DistillError(f"distill.teacher {path} cannot be read as a Hugging Face sequence classifier: "
                               f"{str(err).splitlines()[0]}") from None
    elif location.is_file():
        try:
            model = task_class.load_from_checkpoint(location, map_location="cpu", distill=None).model
        except CheckpointError:
            raise  # names the untrusted import path: a teacher never runs code from its file
        except (TypeError, KeyError, ValueError, RuntimeError) as err:
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            raise DistillError(f"distill.teacher {path} is not a text-classifier checkpoint ({type(err).__name__}: "
                               f"{reason}); give a "
                               "GlueClassifier .ckpt or a Hugging Face model folder") from None
    else:
        raise DistillError(f"distill.teacher {path} does not exist; give the local path of a Hugging Face model "
                           "folder or of a GlueClassifier .ckpt (hub names are not fetched)")
    model.eval().requires_grad_(False)
    return model


def check_teacher(teacher: nn.Module, student: nn.Module, path: str) -> None:
    """DistillError when the teacher's labels or vocabulary differ from the student's (its logits would not match)."""
    for key, what in (("num_labels", "label count"), ("vocab_size", "vocabulary size")):
        mine, theirs = getattr(student.config, key, None), getattr(teacher.config, key, None)
        if mine != theirs:
            raise DistillError(f"distill.teacher {path} has {what} {theirs}, the student {mine}; distill from a "
                               "model trained on the same labels with the same tokenizer")


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) of the logits softened by ``temperature``, times temperature squared (Hinton et al.
    2015), averaged over the batch."""
    return F.kl_div(F.log_softmax(student / temperature, dim=-1), F.log_softmax(teacher / temperature, dim=-1),
                    log_target=True, reduction="batchmean") * temperature**2


@torch.no_grad()
def teacher_logits(teacher: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
    """The frozen teacher's logits for the student's batch (its inputs moved to the teacher's device)."""
    return teacher(**inputs).logits
