"""HeLU, the hysteresis activation: the op ``torch.ops.helu_lightning.helu``, the functional ``helu`` and the
module ``HeLU``.

HeLU's forward is ReLU, equal in value for every input. Its backward lets the gradient through wherever
``x > -alpha`` instead of only where ``x > 0``, with alpha rounded once, from its float64 value, to x's dtype.
To remember which zeros lie below the band without saving the input, the forward writes ``-0.0`` where
``x <= -alpha`` and ``+0.0`` on the band ``(-alpha, 0]``: the output equals ``relu(x)`` in value, the backward
zeroes the gradient exactly where the output is ``-0.0``, and the saved tensor is the output itself, as for
ReLU. Extra memory over ReLU: none. NaN inputs give NaN outputs and pass the gradient, as ReLU does.
``memory="input"`` trades memory for speed: it saves the input and runs exactly ReLU's kernels.

The op is a ``torch.library.custom_op`` with an autograd formula, a fake (meta) kernel and a vmap rule, so
``torch.compile``, ``torch.export`` training graphs, dispatch modes and tensor subclasses all see HeLU's
gradient. Plain eager autograd, where nothing traces, skips the custom op's Python wrapper (tens of
microseconds a call, more than the kernels of a mid-sized activation) and runs ``_HeLUEager``, an
``autograd.Function`` on the same kernels and formulas. ``torch.func`` gradient transforms and forward-mode AD
run through ``_HeLUTransforms``, an ``autograd.Function`` twin with a ``jvp`` on the tensor kernels. All three
pick their kernels from ``helu_lightning.kernels``.

Under ``torch.compile`` the op stays opaque (a fallback kernel), and on CUDA it runs the same single Triton
kernel each way at run time. It is deliberately not a ``torch.library.triton_op``: Inductor fuses no user Triton
kernel with its neighbours either, so that would save only the call's host overhead, while tracing into the op
would hand alpha's float16/bfloat16 rounding to Inductor, which keeps such intermediates in float32.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from .errors import UserError
from .kernels import KERNELS, kernel_for

__all__ = ["DEFAULT_ALPHA", "HeLU", "check_alpha", "helu"]

DEFAULT_ALPHA = 0.05
_MEMORY_MODES = ("output", "input")


def check_alpha(alpha: Any) -> float:
    """Return ``alpha`` as a float, or raise UserError naming the bad value and what is expected."""
    if isinstance(alpha, Tensor):
        if alpha.numel() != 1 or not alpha.is_floating_point():
            raise UserError(f"alpha must be a single float, got a {alpha.dtype} tensor of shape {tuple(alpha.shape)}")
        alpha = alpha.item()
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise UserError(f"alpha must be a positive finite number such as 0.05, got {alpha!r}")
    value = float(alpha)
    if not math.isfinite(value) or value <= 0:
        raise UserError(
            f"alpha must be a positive finite number such as 0.05, got {alpha!r}; "
            "HeLU passes gradient where x > -alpha, and alpha -> 0 recovers ReLU (use name 'relu' for that)"
        )
    return value


@torch.library.custom_op("helu_lightning::helu", mutates_args=())
def _helu_op(x: Tensor, alpha: Tensor, save_input: bool) -> Tensor:
    if save_input:
        return torch.relu(x)
    return KERNELS[kernel_for(x)].forward(x, alpha)


@_helu_op.register_fake
def _helu_fake(x: Tensor, alpha: Tensor, save_input: bool) -> Tensor:
    return torch.empty_like(x)  # elementwise kernels lay their output out as empty_like does


@torch.library.custom_op("helu_lightning::helu_input_backward", mutates_args=())
def _input_backward_op(grad: Tensor, x: Tensor, alpha: Tensor) -> Tensor:
    """``memory="input"``'s backward, an op of its own: it rounds alpha to x's dtype, which Inductor, keeping
    float16/bfloat16 intermediates in float32, would skip if it fused the rounding (moving the edge off -alpha)."""
    return KERNELS[kernel_for(grad)].input_backward(grad, x, alpha)


@_input_backward_op.register_fake
def _input_backward_fake(grad: Tensor, x: Tensor, alpha: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward(grad, x, 0.0)  # the layout both kernels give grad and x


def _input_backward_setup(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
    ctx.save_for_backward(inputs[1], inputs[2])


def _input_backward_backward(ctx: Any, grad_grad: Tensor) -> tuple[Tensor, None, None]:
    """The backward is linear in grad with the same mask: its derivative is the op itself."""
    x, alpha = ctx.saved_tensors
    return _input_backward_op(grad_grad, x, alpha), None, None


_input_backward_op.register_autograd(_input_backward_backward, setup_context=_input_backward_setup)


def _setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, bool], output: Tensor) -> None:
    x, alpha, save_input = inputs
    ctx.save_input = save_input
    if save_input:
        ctx.save_for_backward(x, alpha.detach().clone())  # a copy: set_alpha before backward cannot reach it
    else:
        ctx.save_for_backward(output)


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
    """Zero ``grad`` below the band, read from the saved output (or, for ``memory="input"``, the input)."""
    if ctx.save_input:
        x, alpha = ctx.saved_tensors
        return _input_backward_op(grad, x, alpha), None, None
    (y,) = ctx.saved_tensors
    return KERNELS[kernel_for(grad, differentiable=torch.is_grad_enabled())].backward(grad, y), None, None


def _vmap_rule(info: Any, in_dims: tuple, x: Tensor, alpha: Tensor, save_input: bool) -> tuple[Tensor, int]:
    """Elementwise: a batched x goes through as it is; a batched alpha (one per sample) goes sample by sample."""
    return _batched(_helu_op, in_dims, x, alpha, save_input)


def _batched(op: Any, in_dims: tuple, x: Tensor, alpha: Tensor, save_input: bool) -> tuple[Tensor, int]:
    x_dim, alpha_dim, _ = in_dims
    if alpha_dim is None:
        return op(x, alpha, save_input), x_dim
    alphas = alpha.movedim(alpha_dim, 0)
    xs = x.movedim(x_dim, 0) if x_dim is not None else x.expand(alphas.shape[0], *x.shape)
    return torch.stack([op(xi, ai, save_input) for xi, ai in zip(xs, alphas)]), 0


_helu_op.register_autograd(_backward, setup_context=_setup_context)
_helu_op.register_vmap(_vmap_rule)


class _HeLUTransforms(torch.autograd.Function):
    """The op for ``torch.func`` transforms and forward-mode AD, which custom ops do not differentiate: the
    same formulas, on the tensor kernels (traceable by functorch), with a ``jvp``."""

    @staticmethod
    def forward(x: Tensor, alpha: Tensor, save_input: bool) -> Tensor:
        return torch.relu(x) if save_input else KERNELS["tensor"].forward(x, alpha)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, bool], output: Tensor) -> None:
        x, alpha, save_input = inputs
        ctx.save_input = save_input
        rounded = alpha.to(x.dtype, copy=True)
        if save_input:
            ctx.save_for_backward(x, rounded)
        else:
            ctx.save_for_backward(output)
        ctx.save_for_forward(x, rounded)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        if ctx.save_input:
            x, alpha = ctx.saved_tensors
            return KERNELS["tensor"].input_backward(grad, x, alpha), None, None
        (y,) = ctx.saved_tensors
        return KERNELS["tensor"].backward(grad, y), None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple, x: Tensor, alpha: Tensor, save_input: bool) -> tuple[Tensor, int]:
        return _batched(_HeLUTransforms.apply, in_dims, x, alpha, save_input)

    @staticmethod
    def jvp(ctx: Any, x_tangent: Tensor, alpha_tangent: Any, save_input_tangent: Any) -> Tensor:
        x, alpha = ctx.saved_tensors
        return KERNELS["tensor"].input_backward(x_tangent, x, alpha)


class _HeLUEager(torch.autograd.Function):
    """The op for plain eager autograd: the custom op's formulas and kernels without its wrapper's cost. The
    kernel set is chosen once, in the forward; ``memory="input"`` keeps alpha as it was at the forward (a float
    on CPU, where the bits kernels read it on the host anyway; else a device copy in x's dtype)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: Tensor, save_input: bool) -> Tensor:
        ctx.kernels = KERNELS[kernel_for(x, eager=True)]
        ctx.save_input = save_input
        if save_input:
            ctx.alpha = float(alpha) if ctx.kernels is KERNELS["bits"] else alpha.to(x.dtype, copy=True)
            ctx.save_for_backward(x)
            return torch.relu(x)
        y = ctx.kernels.forward(x, alpha)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        kernels = ctx.kernels
        if torch.is_grad_enabled():  # create_graph=True: the backward must itself have a gradient
            kernels = KERNELS["tensor"]
        if ctx.save_input:
            (x,) = ctx.saved_tensors
            alpha = ctx.alpha
            if kernels is not KERNELS["bits"] and not isinstance(alpha, Tensor):
                alpha = torch.tensor(alpha, dtype=torch.float64)
            return kernels.input_backward(grad, x, alpha), None, None
        (y,) = ctx.saved_tensors
        return kernels.backward(grad, y), None, None


def _under_transform() -> bool:
    """Whether a ``torch.func`` transform or a forward-mode AD level is active (never while compiling)."""
    if torch.compiler.is_compiling():
        return False
    return forward_ad._current_level >= 0 or torch._C._functorch.peek_interpreter_stack() is not None


def _apply(x: Tensor, alpha: Tensor, save_input: bool) -> Tensor:
    """Route to the op while anything traces (compile, export, jit, a dispatch mode such as fake tensors, a
    tensor subclass), to its transform twin inside ``torch.func`` / forward-mode AD, else to the eager twin."""
    if torch.compiler.is_compiling():
        return _helu_op(x, alpha, save_input)
    if forward_ad._current_level >= 0 or torch._C._functorch.peek_interpreter_stack() is not None:
        return _HeLUTransforms.apply(x, alpha, save_input)
    if type(x) is Tensor and torch._C._len_torch_dispatch_stack() == 0 and not torch.jit.is_tracing():
        return _HeLUEager.apply(x, alpha, save_input)
    return _helu_op(x, alpha, save_input)


def _check_memory(memory: str) -> bool:
    """``memory`` validated; returns whether the input is saved."""
    if memory not in _MEMORY_MODES:
        raise UserError(
            f"memory must be 'output' (save only the output, as ReLU: no extra memory) or 'input' (save the "
            f"input: ReLU's speed, one more activation-sized tensor per layer), got {memory!r}"
        )
    return memory == "input"


def helu(x: Tensor, alpha: float | Tensor = DEFAULT_ALPHA, memory: str = "output") -> Tensor:
    """Functional HeLU: ``relu(x)`` forward, gradient ``grad * (x > -alpha)`` backward, alpha rounded once to
    x's dtype. A CPU tensor alpha is validated on every call; an accelerator one is not (that would wait for the
    device): validate it once with ``check_alpha``, as ``HeLU`` does when alpha is set."""
    if not isinstance(alpha, Tensor):
        alpha = torch.tensor(check_alpha(alpha), dtype=torch.float64)
    elif alpha.device.type == "cpu" and not torch.compiler.is_compiling() and not _under_transform():
        check_alpha(alpha)
    return _apply(x, alpha, _check_memory(memory))


class HeLU(nn.Module):
    """Hysteresis ReLU (Kimhi et al., 2024). ``alpha`` is a 0-dim float64 buffer: saved in checkpoints,
    changeable in place (``set_alpha``) without recompiling a ``torch.compile``-d model, and rounded once to
    each input's dtype.

    ``memory="output"`` (default) saves only the output, as ReLU does: no extra memory, one extra pass in the
    forward. ``memory="input"`` saves the input instead: ReLU's own kernels and speed, but the input is usually
    kept by no one else, so each HeLU adds an activation-sized tensor (ResNet-18: ~1.4x activation memory).
    ``inplace`` applies only where no gradient is recorded (serving), where HeLU is plain ReLU.
    """

    alpha: Tensor

    def __init__(self, alpha: float = DEFAULT_ALPHA, inplace: bool = False, memory: str = "output") -> None:
        super().__init__()
        self.save_input = _check_memory(memory)
        self.memory = memory
        self.inplace = inplace
        self.register_buffer("alpha", torch.tensor(check_alpha(alpha), dtype=torch.float64))

    def set_alpha(self, alpha: float) -> None:
        """Change alpha in place, keeping the buffer's device and dtype; refused unless it stays positive and
        finite in that dtype (e.g. 1e-50 after ``.half()``)."""
        value = check_alpha(alpha)
        stored = torch.tensor(value, dtype=torch.float64).to(self.alpha.dtype)
        if not (math.isfinite(stored) and stored > 0):
            dtype = str(self.alpha.dtype).removeprefix("torch.")
            raise UserError(f"alpha {value!r} is {float(stored)} in this HeLU's {dtype} buffer; "
                            "choose an alpha that dtype can hold, or keep the buffer in float64")
        with torch.no_grad():
            self.alpha.copy_(stored)

    def reset_parameters(self) -> None:
        """alpha back to the default (used for checkpoints that lack it, e.g. GELU weights loaded into HeLU)."""
        self.set_alpha(DEFAULT_ALPHA)

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad) and not _under_transform():
            # No derivative will reach x, so the band bookkeeping is not needed: plain ReLU, one pass.
            return torch.relu_(x) if self.inplace else torch.relu(x)
        return _apply(x, self.alpha, self.save_input)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        """Refuse a checkpoint whose alpha is not a positive finite number, naming the key and the value."""
        key = prefix + "alpha"
        if key in state_dict:
            try:
                check_alpha(state_dict[key])
            except UserError as err:
                raise UserError(f"checkpoint entry {key!r}: {err}") from None
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        text = f"alpha={self.alpha.item():g}"
        text += ", inplace=True" if self.inplace else ""
        return text + (f", memory={self.memory!r}" if self.memory != "output" else "")
