"""HeLU's Triton kernels for accelerators: one pass each way, the same bits as the ``bits`` and ``tensor`` sets.

- forward: read x, write ``relu(x)`` with ``-0.0`` where ``x <= -alpha`` and ``+0.0`` on the band (-alpha, 0];
- backward: read grad and the saved output, write grad with 0 where the output is ``-0.0``;
- input backward (``memory="input"``): read grad and x, write grad with 0 where ``x <= -alpha``.

Each kernel walks a flat view of the storage, so any dense layout (contiguous, channels_last, transposed, ...)
is processed in place of its storage order, without a copy: the output is ``empty_like`` the input (same
strides), and all operands of one kernel must share their strides. Other layouts (slices with gaps,
broadcast views, operands whose strides differ) go to the ``tensor`` kernels, which handle any strides
without a copy. alpha never leaves its device: it is rounded once to x's dtype by ``alpha.to(x.dtype)``
(the same op as the ``tensor`` set; Triton's casts are not round-to-nearest everywhere: its interpreter
truncates float32 -> bfloat16) and the kernel reads that one element. The kernels compare in float32 (exact
for every input dtype) and write integer views, so no value is rounded and no signed zero is folded on the way.
float64 keeps the ``tensor`` kernels.

Importing this module imports Triton; ``helu_lightning.kernels`` does so only when the set is first chosen.
With ``TRITON_INTERPRET=1`` set before that, the kernels run in Triton's interpreter on CPU tensors (tests);
wherever Triton cannot run (meta and fake tensors, CPU without the interpreter) each kernel falls back to the
``tensor`` set, so ``set_kernel("triton")`` never breaks a model built on ``meta``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from .errors import UserError
from .kernels import _TRITON_DTYPES, Kernels, backward_tensor, forward_tensor, input_backward_tensor

__all__ = ["TRITON_KERNELS", "flat_layout", "runs_here"]

_INT_VIEW = {4: torch.int32, 2: torch.int16}
_INT_MIN = {size: torch.iinfo(dtype).min for size, dtype in _INT_VIEW.items()}
_BLOCK = 1024
# Whether Triton will interpret the kernels below: read now, when they are defined, as Triton does.
_INTERPRETED = os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes")


@triton.jit
def _forward_kernel(x_ptr, y_bits_ptr, alpha_ptr, n, NEG_ZERO: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    x = tl.load(x_ptr + offsets, mask=inside)
    value = x.to(tl.float32)  # exact for every input dtype; the comparisons below are those of x's dtype
    bits = x.to(y_bits_ptr.dtype.element_ty, bitcast=True)
    edge = -tl.load(alpha_ptr).to(tl.float32)
    y = tl.where(value <= edge, NEG_ZERO, tl.where(value <= 0, 0, bits))  # NaN fails both tests and is kept
    tl.store(y_bits_ptr + offsets, y, mask=inside)


@triton.jit
def _backward_kernel(grad_bits_ptr, y_bits_ptr, out_bits_ptr, n, NEG_ZERO: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    grad = tl.load(grad_bits_ptr + offsets, mask=inside)
    y = tl.load(y_bits_ptr + offsets, mask=inside)
    tl.store(out_bits_ptr + offsets, tl.where(y == NEG_ZERO, 0, grad), mask=inside)  # inf/NaN grad below -> 0


@triton.jit
def _input_backward_kernel(grad_bits_ptr, x_ptr, alpha_ptr, out_bits_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    grad = tl.load(grad_bits_ptr + offsets, mask=inside)
    x = tl.load(x_ptr + offsets, mask=inside).to(tl.float32)
    below = x <= -tl.load(alpha_ptr).to(tl.float32)  # false at NaN: NaN passes the gradient, as in ReLU
    tl.store(out_bits_ptr + offsets, tl.where(below, 0, grad), mask=inside)


def _dense(t: Tensor) -> bool:
    """Whether ``t``'s elements fill one block of its storage exactly once (any order of the dimensions)."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return True
    return torch._prims_common.is_non_overlapping_and_dense_or_false(t)


def _strides(t: Tensor) -> tuple[int, ...]:
    """Strides of the dimensions longer than 1 (the others never move the index)."""
    return tuple(stride for size, stride in zip(t.shape, t.stride()) if size != 1)


def runs_here(t: Tensor) -> bool:
    """Whether Triton can run on ``t``: a real CUDA tensor, or a CPU one under Triton's interpreter. Not a meta
    tensor (a large model built for initialisation), a FakeTensor (tracing), another device, or CPU without
    ``TRITON_INTERPRET=1``: those take the ``tensor`` kernels, which give the same bits."""
    from torch._subclasses.fake_tensor import FakeTensor

    if isinstance(t, FakeTensor):
        return False
    return t.device.type == "cuda" or (t.device.type == "cpu" and _INTERPRETED)


def flat_layout(first: Tensor, *others: Tensor) -> bool:
    """Whether one flat pass over ``first``'s storage covers every operand element for element: ``first`` is
    dense, Triton runs on its device, and every other operand has its shape and strides."""
    if first.dtype not in _TRITON_DTYPES or not runs_here(first) or not _dense(first):
        return False
    strides = _strides(first)
    return all(o.shape == first.shape and o.dtype == first.dtype and _strides(o) == strides for o in others)


def _launch(kernel: Any, t: Tensor, *args: Any, **meta: Any) -> None:
    """Run ``kernel`` over ``t.numel()`` elements on ``t``'s GPU (Triton launches on the current one)."""
    if not runs_here(t):  # flat_layout sends these to the tensor kernels; a direct caller learns why not
        raise UserError(f"HeLU's Triton kernels cannot run on a {t.device.type} tensor here (CUDA, or CPU under "
                        "TRITON_INTERPRET=1 set before helu_lightning first uses them); use set_kernel('auto')")
    on_device = contextlib.nullcontext()
    if t.device.type == "cuda" and t.device.index != torch.cuda.current_device():
        on_device = torch.cuda.device(t.device)
    with on_device:
        kernel[(triton.cdiv(t.numel(), _BLOCK),)](*args, t.numel(), BLOCK=_BLOCK, **meta)


def _rounded_alpha(alpha: Tensor, x: Tensor) -> Tensor:
    """alpha rounded once to x's dtype on x's device (no host sync for a device alpha: the copy is queued)."""
    return alpha.to(device=x.device, dtype=x.dtype, non_blocking=True)


def _bits(t: Tensor) -> Tensor:
    """The integer view of ``t``: the kernels move bits, so no float rounding or signed-zero folding can occur."""
    return t.view(_INT_VIEW[t.element_size()])


def _neg_zero(t: Tensor) -> int:
    """-0.0 in ``t``'s integer view: the integer minimum."""
    return _INT_MIN[t.element_size()]


def forward_triton(x: Tensor, alpha: Tensor) -> Tensor:
    """``relu(x)`` with -0.0 below the band, in one pass over dense ``x``; other layouts: ``forward_tensor``."""
    if not flat_layout(x):
        return forward_tensor(x, alpha)
    y = torch.empty_like(x)
    if x.numel():
        _launch(_forward_kernel, x, x, _bits(y), _rounded_alpha(alpha, x), NEG_ZERO=_neg_zero(x))
    return y


def backward_triton(grad: Tensor, y: Tensor) -> Tensor:
    """grad with 0 where the saved output is -0.0, in one pass; other layouts: ``backward_tensor``."""
    if not flat_layout(y, grad):
        return backward_tensor(grad, y)
    out = torch.empty_like(y)
    if y.numel():
        _launch(_backward_kernel, y, _bits(grad), _bits(y), _bits(out), NEG_ZERO=_neg_zero(y))
    return out


def input_backward_triton(grad: Tensor, x: Tensor, alpha: Tensor) -> Tensor:
    """``memory="input"``'s backward in one pass; other layouts: ``input_backward_tensor``."""
    if not flat_layout(x, grad):
        return input_backward_tensor(grad, x, alpha)
    out = torch.empty_like(x)
    if x.numel():
        _launch(_input_backward_kernel, x, _bits(grad), x, _rounded_alpha(alpha, x), _bits(out))
    return out


TRITON_KERNELS = Kernels(forward_triton, backward_triton, input_backward_triton)
