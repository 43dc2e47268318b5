"""HeLU's kernels, by name, and the one table that chooses between them.

Two kernel sets compute the same bits:

- ``bits``: eager CPU. The forward is two integer ``threshold`` passes over the float bits, the backward one
  ``threshold_backward`` on the integer views: the kernels ReLU itself uses. alpha is read on the host (free on
  CPU).
- ``tensor``: select ops (``torch.where``) with alpha as a 0-dim tensor. Used on accelerators (no host sync),
  while ``torch.compile`` traces (Inductor fuses and vectorises them; bit casts it does not), for double
  backward (``create_graph=True``: the backward must itself be differentiable) and inside ``torch.func``
  transforms. The backward is a select, never a product with a 0/1 mask, so an inf or NaN upstream gradient
  below the band gives 0, as ReLU's does.
- ``triton``: eager CUDA in float32, float16 and bfloat16 (``helu_lightning.triton_kernels``): one pass each
  way, as ReLU, where the tensor set runs six kernels (about 44 bytes per float32 element against ReLU's 20).
  Dense layouts only; any other layout, and float64, fall back to the tensor set.

``set_kernel("tensor")`` (or ``with use_kernel("tensor"):``) forces the tensor set everywhere, e.g. to test the
accelerator path on CPU; ``set_kernel("triton")`` forces the Triton set wherever it applies (on CPU tensors
under ``TRITON_INTERPRET=1``, as the tests run it); ``"auto"`` (the default) applies the rules above.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor
from torch.fx.experimental.proxy_tensor import get_proxy_mode

__all__ = ["KERNELS", "Kernels", "get_kernel", "kernel_for", "set_kernel", "use_kernel"]

_INT_VIEW = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}
_INT_MIN = {dtype: torch.iinfo(dtype).min for dtype in _INT_VIEW.values()}
_threshold_backward = torch.ops.aten.threshold_backward.default  # the overload itself: no resolution per call
_BIT_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


@lru_cache(maxsize=256)
def _bit_codes(alpha: float, dtype: torch.dtype) -> tuple[torch.dtype, int, int, int]:
    """Integer views of -alpha (rounded once to ``dtype``), -inf and -0.0: (int dtype, -alpha, -inf, -0.0).

    Read as signed integers, negative floats sort by magnitude above -0.0 (the integer minimum), so the band
    (-alpha, 0) is exactly the integers below the code of -alpha.
    """
    int_dtype = _INT_VIEW[torch.finfo(dtype).bits // 8]
    neg_alpha = int(torch.tensor(-alpha, dtype=torch.float64).to(dtype).view(int_dtype))
    neg_inf = int(torch.tensor(-math.inf, dtype=dtype).view(int_dtype))
    return int_dtype, neg_alpha, neg_inf, torch.iinfo(int_dtype).min


def forward_bits(x: Tensor, alpha: Tensor) -> Tensor:
    """``relu(x)`` with -0.0 below the band, as two integer ``threshold`` passes: the band (-alpha, 0] -> +0.0,
    then x <= -alpha -> -0.0; NaN of either sign is kept."""
    int_dtype, neg_alpha, neg_inf, below = _bit_codes(float(alpha), x.dtype)
    if neg_alpha == below:  # alpha rounds to 0 in this dtype: no band, ReLU's gradient
        return torch.threshold(x, 0.0, -0.0)
    bits = torch.threshold(x.view(int_dtype), neg_alpha - 1, 0)
    return torch.threshold_(bits, neg_inf, below).view(x.dtype)


def forward_tensor(x: Tensor, alpha: Tensor) -> Tensor:
    """The same bits as ``forward_bits`` from select ops, alpha never leaving its device."""
    return torch.where(x <= -alpha.to(x.dtype), -0.0, torch.threshold(x, 0.0, 0.0))


def backward_bits(grad: Tensor, y: Tensor) -> Tensor:
    """Zero the gradient where the saved output is -0.0: one ``threshold_backward`` on the integer views."""
    int_dtype = _INT_VIEW[y.element_size()]
    return _threshold_backward(grad.view(int_dtype), y.view(int_dtype), _INT_MIN[int_dtype]).view(grad.dtype)


def backward_tensor(grad: Tensor, y: Tensor) -> Tensor:
    """Zero the gradient where the saved output is -0.0, by a select. y is never negative, so 1/y < 0 exactly
    where y is -0.0 (1/-0.0 = -inf); NaN compares false and passes, as in ReLU."""
    return torch.where(torch.reciprocal(y.detach()) < 0, 0.0, grad)


@lru_cache(maxsize=256)
def _edge(alpha: float, dtype: torch.dtype) -> float:
    """-alpha rounded once, from float64, to ``dtype``, as a Python float."""
    return float(torch.tensor(-alpha, dtype=torch.float64).to(dtype))


def input_backward_bits(grad: Tensor, x: Tensor, alpha: Tensor | float) -> Tensor:
    """``memory="input"``: ReLU's backward kernel with the threshold moved to -alpha (alpha rounded to x's dtype;
    a Python float alpha is taken as float64)."""
    return _threshold_backward(grad, x, _edge(float(alpha), x.dtype))


def input_backward_tensor(grad: Tensor, x: Tensor, alpha: Tensor) -> Tensor:
    """``memory="input"`` by a select; ``x <= -alpha`` is false at NaN, so NaN passes the gradient as in ReLU."""
    return torch.where(x.detach() <= -alpha.to(x.dtype), 0.0, grad)


@dataclass(frozen=True)
class Kernels:
    """One consistent kernel set: the forward that writes the band's signed zeros, and both backwards. Each
    takes alpha as a tensor of any float dtype and rounds it once to x's dtype (a no-op when it is already)."""

    forward: Callable[[Tensor, Tensor], Tensor]
    backward: Callable[[Tensor, Tensor], Tensor]
    input_backward: Callable[[Tensor, Tensor, Tensor], Tensor]


class _KernelTable(dict):
    """The kernel sets by name; ``triton`` is loaded by name on first use, as a plugin: CPU-only work never imports
    Triton, and ``helu_lightning.triton_kernels`` builds on this module (its fallbacks are the tensor kernels)."""

    def __missing__(self, name: str) -> Kernels:
        if name != "triton":
            raise KeyError(name)
        kernels = importlib.import_module(f"{__package__}.triton_kernels").TRITON_KERNELS
        self[name] = kernels
        return kernels


KERNELS: dict[str, Kernels] = _KernelTable(
    bits=Kernels(forward_bits, backward_bits, input_backward_bits),
    tensor=Kernels(forward_tensor, backward_tensor, input_backward_tensor),
)
_CHOICES = ("auto", "tensor", "triton")
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_HAS_TRITON = importlib.util.find_spec("triton") is not None
_setting = "auto"


def set_kernel(name: str) -> None:
    """Choose HeLU's kernels for the whole process: ``"auto"`` (bits on eager CPU, triton on eager CUDA, tensor
    elsewhere), ``"tensor"`` (select ops everywhere) or ``"triton"`` (Triton wherever it applies)."""
    global _setting
    if name not in _CHOICES:
        raise ValueError(f"kernel must be one of {', '.join(map(repr, _CHOICES))}, got {name!r}")
    if name == "triton" and not _HAS_TRITON:
        raise ValueError("kernel 'triton' needs the triton package (pip install triton); "
                         "use 'auto' or 'tensor' without it")
    _setting = name


def get_kernel() -> str:
    """The current setting of ``set_kernel``."""
    return _setting


@contextmanager
def use_kernel(name: str) -> Iterator[None]:
    """``set_kernel(name)`` inside a ``with`` block, restored on exit."""
    previous = _setting
    set_kernel(name)
    try:
        yield
    finally:
        set_kernel(previous)


def _tracing(x: Tensor) -> bool:
    """Whether ``x`` is being traced (torch.compile, AOT autograd, export, opcheck): no host reads then."""
    if torch.compiler.is_compiling() or isinstance(x, FakeTensor):
        return True
    return torch._C._len_torch_dispatch_stack() > 0 and get_proxy_mode() is not None  # proxy modes are on it


def kernel_for(x: Tensor, differentiable: bool = False, eager: bool = False) -> str:
    """The name of the kernel set for tensor ``x``: ``bits`` for eager, non-differentiable CPU work on a float
    dtype, ``triton`` for the same on CUDA in float32/float16/bfloat16 (or anywhere under
    ``set_kernel("triton")``), else ``tensor``. ``eager=True``: the caller knows nothing traces (skips the check)."""
    if _setting == "tensor" or differentiable or x.dtype not in _BIT_DTYPES or (not eager and _tracing(x)):
        return "tensor"
    if _setting == "triton" or (x.device.type == "cuda" and _HAS_TRITON):
        return "triton" if x.dtype in _TRITON_DTYPES else "tensor"
    return "bits" if x.device.type == "cpu" else "tensor"
