"""HeLU -> ReLU and the checks that nothing else changed: the eager swap must be bitwise, the file formats within a
tolerance (other kernels, graph rewrites)."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..activations import HeLU, NaiveHeLU
from ..surgery import replace_activations

__all__ = ["RTOL", "ATOL", "VerificationError", "check_format", "compare", "eager_logits", "is_hf", "logits", "to_relu",
           "verify_bitwise"]

RTOL, ATOL = 1e-3, 1e-4


class VerificationError(RuntimeError):
    """The exported model does not reproduce the trained model's outputs."""


def logits(output: Any) -> Tensor:
    """The logits tensor of a model output: a tensor, a mapping or object with ``logits``, or a tuple's first item."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping) or hasattr(output, "logits"):
        found = output["logits"] if isinstance(output, Mapping) else output.logits
        if isinstance(found, Tensor):
            return found
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(f"cannot find the logits in a model output of type {type(output).__name__}")


def eager_logits(model: nn.Module, inputs: Tensor | Mapping[str, Tensor]) -> Tensor:
    """The model's logits on ``inputs`` (a tensor, or named tensors for HF models), without autograd."""
    with torch.no_grad():
        return logits(model(**inputs) if isinstance(inputs, Mapping) else model(inputs))


def is_hf(model: nn.Module) -> bool:
    """Whether ``model`` is a Hugging Face model (has a config and ``save_pretrained``)."""
    return hasattr(model, "config") and hasattr(model, "save_pretrained")


def to_relu(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A deep copy of ``model`` with every HeLU replaced by ``nn.ReLU`` (and an HF config saying ``relu``)."""
    plain = copy.deepcopy(model).eval()
    replaced = replace_activations(plain, "relu", targets=(HeLU, NaiveHeLU), strict=False)
    if replaced and is_hf(plain):
        plain.config.hidden_act = "relu"
        if hasattr(plain.config, "helu_activation"):
            del plain.config.helu_activation
    return plain, replaced


def compare(reference: Tensor, output: Any) -> dict[str, Any]:
    """Bitwise equality, max abs difference and closeness of ``output`` to ``reference``."""
    output = torch.as_tensor(output)
    if reference.shape != output.shape:
        return {"bitwise_equal": False, "max_abs_diff": math.inf, "allclose": False, "shape": list(output.shape)}
    diff = (reference.double() - output.double()).abs().max().item() if reference.numel() else 0.0
    return {"bitwise_equal": bool(torch.equal(reference, output)), "max_abs_diff": diff,
            "allclose": bool(torch.allclose(reference, output.to(reference.dtype), rtol=RTOL, atol=ATOL))}


def verify_bitwise(reference: nn.Module, exported: nn.Module, inputs: Tensor | Mapping[str, Tensor]) -> dict[str, Any]:
    """Check ``exported`` gives bit-for-bit the outputs of ``reference`` on ``inputs``; VerificationError if not."""
    result = compare(eager_logits(reference, inputs), eager_logits(exported, inputs))
    if not result["bitwise_equal"]:
        raise VerificationError(
            f"the exported {type(exported).__name__} differs from the trained model (max abs diff "
            f"{result['max_abs_diff']:.3g}); HeLU's forward is ReLU, so only the activations may change: check that "
            "nothing but HeLU modules differs between the two models"
        )
    return result


def check_format(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` of :func:`compare` when within tolerance, else VerificationError naming the format."""
    if not result["allclose"]:
        raise VerificationError(f"the {name} export differs from the eager model by {result['max_abs_diff']:.3g} "
                                f"(tolerance rtol={RTOL}, atol={ATOL}); nothing was written")
    return result
