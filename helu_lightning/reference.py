"""``NaiveHeLU``: the authors' reference design, kept apart from the fast op as the twin it is checked against
and as the baseline of ``benchmarks/activation.py``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .op import DEFAULT_ALPHA, check_alpha

__all__ = ["NaiveHeLU"]


class NaiveHeLU(nn.Module):
    """Saves the whole input and masks with two ``torch.where``; alpha is a Python float.

    Its forward maps NaN to 0 (``x > 0`` is false at NaN), unlike ReLU.
    """

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        super().__init__()
        self.alpha = check_alpha(alpha)

    def forward(self, x: Tensor) -> Tensor:
        return _NaiveHeLUFunction.apply(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


class _NaiveHeLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return torch.where(x > 0, x, torch.zeros_like(x))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return torch.where(x > -ctx.alpha, grad, torch.zeros_like(grad)), None
