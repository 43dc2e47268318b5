"""HeLU, the hysteresis activation, and the registry that builds any activation by name.

HeLU's forward is ReLU, equal in value for every input. Its backward lets the gradient through wherever
``x > -alpha`` instead of only where ``x > 0``. To remember which zeros lie below the band without saving the
input, the forward writes ``-0.0`` where ``x <= -alpha`` and ``+0.0`` on the band ``(-alpha, 0]``: the output
equals ``relu(x)`` in value, the backward zeroes the gradient exactly where the output is ``-0.0``, and the
saved tensor is the output itself, as for ReLU (the next layer usually saves it anyway). Extra memory over
ReLU: none. On CPU both directions run as integer ``threshold`` kernels on the float bits, the kernels ReLU
itself uses. NaN inputs give NaN outputs and pass the gradient, as ReLU does. ``HeLU(memory="input")`` trades
memory for speed: it saves the input and runs exactly ReLU's kernels (see ``benchmarks/activation.py``).
"""

from __future__ import annotations

import difflib
import math
import numbers
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "ActivationFactory",
    "ActivationSpec",
    "HeLU",
    "NaiveHeLU",
    "activation_factory",
    "available_activations",
    "check_alpha",
    "helu",
    "make_activation",
    "register_activation",
    "register_hf_activations",
]

_INT_VIEW = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}
_FAST_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
_NEGATIVE_ZERO = {size: (dtype, torch.iinfo(dtype).min) for size, dtype in _INT_VIEW.items()}  # -0.0's bits


def check_alpha(alpha: Any) -> float:
    """Return ``alpha`` as a float, or raise ValueError naming the bad value and what is expected."""
    if isinstance(alpha, Tensor):
        if alpha.numel() != 1:
            raise ValueError(f"alpha must be a single number, got a tensor of shape {tuple(alpha.shape)}")
        alpha = alpha.item()
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise ValueError(f"alpha must be a positive finite number such as 0.05, got {alpha!r}")
    value = float(alpha)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"alpha must be a positive finite number such as 0.05, got {alpha!r}; "
            "HeLU passes gradient where x > -alpha, and alpha -> 0 recovers ReLU (use name 'relu' for that)"
        )
    return value


@lru_cache(maxsize=256)
def _bit_codes(alpha: float, dtype: torch.dtype) -> tuple[torch.dtype, int, int, int]:
    """Integer views of -alpha, -inf and -0.0 in ``dtype``: (int dtype, -alpha, -inf, -0.0).

    Read as signed integers, negative floats sort by magnitude above -0.0 (the integer minimum), so the band
    (-alpha, 0) is exactly the integers below the code of -alpha.
    """
    int_dtype = _INT_VIEW[torch.finfo(dtype).bits // 8]
    neg_alpha = int(torch.tensor(-alpha, dtype=dtype).view(int_dtype))
    neg_inf = int(torch.tensor(-math.inf, dtype=dtype).view(int_dtype))
    return int_dtype, neg_alpha, neg_inf, torch.iinfo(int_dtype).min


def _forward_eager_cpu(x: Tensor, alpha: float) -> Tensor:
    """Two integer ``threshold`` passes over the float bits: the band (-alpha, 0] -> +0.0, then
    x <= -alpha -> -0.0; NaN of either sign is kept."""
    int_dtype, neg_alpha, neg_inf, below = _bit_codes(alpha, x.dtype)
    if neg_alpha == below:  # alpha rounds to 0 in this dtype: no band, ReLU's gradient
        return torch.threshold(x, 0.0, -0.0)
    bits = torch.threshold(x.view(int_dtype), neg_alpha - 1, 0)
    return torch.threshold_(bits, neg_inf, below).view(x.dtype)


def _eager_cpu(x: Tensor) -> bool:
    """Whether the scalar-threshold CPU kernels apply (reading alpha on the host is free on CPU)."""
    return x.device.type == "cpu" and x.dtype in _FAST_DTYPES and not torch.compiler.is_compiling()


def _forward(x: Tensor, alpha: Tensor) -> Tensor:
    """``relu(x)`` in value, with the sign of each zero recording the band: +0.0 for -alpha < x <= 0 and
    -0.0 for x <= -alpha (the only -0.0 the output holds)."""
    if _eager_cpu(x):
        return _forward_eager_cpu(x, float(alpha))
    # Tensor ops: no host sync on accelerators, one fused kernel under torch.compile.
    return torch.where(x <= -alpha.to(x.dtype), -0.0, torch.threshold(x, 0.0, 0.0))


def _backward(grad: Tensor, y: Tensor) -> Tensor:
    """Zero the gradient where the saved output is -0.0 (x <= -alpha); pass it everywhere else, NaN included."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling() or grad.device.type not in ("cpu", "cuda"):
        # Double backward (create_graph=True), torch.compile and other devices: a differentiable product of
        # float ops, which Inductor fuses and vectorises (bit casts and signbit it does not). y is never
        # negative, so 1/y < 0 exactly where y is -0.0 (1/-0.0 = -inf); NaN compares false and passes.
        return grad * ~(torch.reciprocal(y.detach()) < 0)
    # One kernel, the same as ReLU's backward (threshold_backward), on the integer views.
    int_dtype, below = _NEGATIVE_ZERO[y.element_size()]
    bits = y.view(int_dtype)
    return torch.ops.aten.threshold_backward(grad.view(int_dtype), bits, below).view(grad.dtype)


# Both Functions use the classic ``forward(ctx, ...)`` form: measured ~40 us per call cheaper than
# ``setup_context`` here, which matters for small activations.
class _HeLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: Tensor) -> Tensor:
        output = _forward(x, alpha)
        ctx.save_for_backward(output)
        return output

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (y,) = ctx.saved_tensors
        return _backward(grad, y), None


class _HeLUSaveInputFunction(torch.autograd.Function):
    """``memory="input"``: ReLU's forward kernel, and one ``threshold_backward`` at -alpha over the saved input."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: Tensor) -> Tensor:
        ctx.save_for_backward(x, -alpha.to(x.dtype))  # a copy: set_alpha before backward does not change it
        return torch.relu(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        x, edge = ctx.saved_tensors
        if _eager_cpu(x) and not torch.is_grad_enabled():
            return torch.ops.aten.threshold_backward(grad, x, float(edge)), None
        return grad * ~(x <= edge), None  # ~(x <= edge) rather than x > edge: NaN passes, as in ReLU


_MEMORY_MODES = {"output": _HeLUFunction, "input": _HeLUSaveInputFunction}


def helu(x: Tensor, alpha: float | Tensor = 0.05, memory: str = "output") -> Tensor:
    """Functional HeLU: ``relu(x)`` forward, gradient ``grad * (x > -alpha)`` backward (alpha rounded to x's
    dtype). At NaN inputs the output is NaN and the gradient passes, exactly as ReLU's. ``memory`` as in
    ``HeLU``."""
    if not isinstance(alpha, Tensor):
        alpha = torch.tensor(check_alpha(alpha))
    return _function(memory).apply(x, alpha)


def _function(memory: str) -> type[torch.autograd.Function]:
    if memory not in _MEMORY_MODES:
        raise ValueError(
            f"memory must be 'output' (save only the output, as ReLU: no extra memory) or 'input' (save the "
            f"input: ReLU's speed, one more activation-sized tensor per layer), got {memory!r}"
        )
    return _MEMORY_MODES[memory]


class HeLU(nn.Module):
    """Hysteresis ReLU (Kimhi et al., 2024). ``alpha`` is a 0-dim buffer: saved in checkpoints and changeable
    in place (``set_alpha``) without recompiling a ``torch.compile``-d model.

    ``memory="output"`` (default) saves only the output, as ReLU does: no extra memory, one extra pass in the
    forward. ``memory="input"`` saves the input instead: ReLU's own kernels and speed, but the input is usually
    kept by no one else, so each HeLU adds an activation-sized tensor (ResNet-18: ~1.4x activation memory).
    ``inplace`` applies only where no gradient is recorded (serving), where HeLU is plain ReLU.
    """

    alpha: Tensor

    def __init__(self, alpha: float = 0.05, inplace: bool = False, memory: str = "output") -> None:
        super().__init__()
        self.register_buffer("alpha", torch.tensor(check_alpha(alpha), dtype=torch.float32))
        self.inplace = inplace
        self.memory = memory
        self._function = _function(memory)

    def set_alpha(self, alpha: float) -> None:
        """Change alpha in place (validated), keeping the buffer's device and dtype."""
        with torch.no_grad():
            self.alpha.fill_(check_alpha(alpha))

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            # No backward will reach x, so the band bookkeeping is not needed: plain ReLU, one pass.
            return torch.relu_(x) if self.inplace else torch.relu(x)
        return self._function.apply(x, self.alpha)

    def extra_repr(self) -> str:
        text = f"alpha={self.alpha.item():g}"
        text += ", inplace=True" if self.inplace else ""
        return text + (f", memory={self.memory!r}" if self.memory != "output" else "")


class NaiveHeLU(nn.Module):
    """The authors' reference design: saves the whole input and masks with two ``torch.where``.

    Its forward maps NaN to 0 (``x > 0`` is false at NaN), unlike ReLU. Kept as the twin the fast HeLU is
    checked against, and as the baseline of ``benchmarks/activation.py``.
    """

    def __init__(self, alpha: float = 0.05) -> None:
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


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "helu": HeLU,
    "helu_naive": NaiveHeLU,
    "gelu": nn.GELU,
    "gelu_tanh": partial(nn.GELU, approximate="tanh"),
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}


def available_activations() -> list[str]:
    """The names ``make_activation`` accepts, sorted."""
    return sorted(_REGISTRY)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _lookup(name: str) -> Callable[..., nn.Module]:
    if not isinstance(name, str):
        raise TypeError(f"an activation name must be a string, got {name!r}")
    key = _normalise(name)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown activation {name!r}.{hint} Known activations: {', '.join(available_activations())}; "
            "add your own with helu_lightning.register_activation(name, cls)."
        )
    return _REGISTRY[key]


def make_activation(name: str, **kwargs: Any) -> nn.Module:
    """Build a fresh activation module by registry name, e.g. ``make_activation("helu", alpha=0.01)``."""
    builder = _lookup(name)
    try:
        return builder(**kwargs)
    except TypeError as err:
        raise TypeError(f"activation {name!r} does not take {sorted(kwargs)}: {err}") from err


def register_activation(name: str, cls: Callable[..., nn.Module], overwrite: bool = False) -> None:
    """Add ``cls`` to the registry under ``name`` (and to transformers' ``ACT2FN`` once it is loaded)."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"register_activation needs a non-empty string name, got {name!r}")
    key = _normalise(name)
    if not callable(cls):
        raise TypeError(f"register_activation({name!r}, ...) needs a class or callable returning an nn.Module")
    if key in _REGISTRY and _REGISTRY[key] is not cls and not overwrite:
        raise ValueError(f"activation {key!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[key] = cls
    if "transformers.activations" in sys.modules:
        register_hf_activations()


def register_hf_activations() -> None:
    """Make every registry name valid as a Hugging Face ``config.hidden_act`` (``ACT2CLS`` / ``ACT2FN``).

    Import-time registration would load transformers for every user, so HF code paths call this instead;
    it also runs on ``import helu_lightning`` when transformers is already loaded.
    """
    from transformers import activations as hf

    for key, builder in _REGISTRY.items():
        if key not in hf.ACT2CLS or key in ("helu", "helu_naive"):
            hf.ACT2CLS[key] = builder
            hf.ACT2FN[key] = builder


@dataclass
class ActivationSpec:
    """An activation as configs name it: ``{name: helu, alpha: 0.01}``; other options go in ``options``."""

    name: str = "helu"
    alpha: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.options)
        if self.alpha is not None:
            kwargs["alpha"] = self.alpha
        return kwargs


class ActivationFactory:
    """A zero-argument callable that builds a fresh activation module per call; picklable and printable."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        _lookup(name)
        self.name = _normalise(name)
        self.kwargs = kwargs
        make_activation(name, **kwargs)  # fail now, at configuration time, on bad kwargs or alpha

    def __call__(self) -> nn.Module:
        return make_activation(self.name, **self.kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{"name": ..., **kwargs}``, the form checkpoints and YAML configs store."""
        return {"name": self.name, **self.kwargs}

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"ActivationFactory({self.name!r}{args})"


ActivationLike = str | Mapping[str, Any] | ActivationSpec | Callable[[], nn.Module]


def activation_factory(spec: ActivationLike) -> Callable[[], nn.Module]:
    """Turn a name, a mapping ``{name: helu, alpha: 0.01}``, an ``ActivationSpec`` or a zero-argument callable
    into a zero-argument callable that returns a fresh ``nn.Module`` each call."""
    if isinstance(spec, ActivationFactory):
        return spec
    if isinstance(spec, str):
        return ActivationFactory(spec)
    if isinstance(spec, ActivationSpec):
        return ActivationFactory(spec.name, **spec.kwargs())
    if isinstance(spec, Mapping):
        kwargs = dict(spec)
        if "name" not in kwargs:
            raise ValueError(
                f"an activation mapping needs a 'name' key, e.g. {{'name': 'helu', 'alpha': 0.05}}; got {spec!r}"
            )
        name = kwargs.pop("name")
        kwargs.update(kwargs.pop("options", None) or {})
        if "alpha" in kwargs and kwargs["alpha"] is None:
            del kwargs["alpha"]
        return ActivationFactory(name, **kwargs)
    if isinstance(spec, nn.Module):
        raise TypeError(
            f"got the module instance {spec!r}; pass its class ({type(spec).__name__}) or a name so that every "
            "layer gets its own fresh module"
        )
    if callable(spec):
        return spec
    raise TypeError(
        f"cannot make an activation from {spec!r}; give a name ('helu'), a mapping "
        "({'name': 'helu', 'alpha': 0.05}) or a zero-argument callable returning an nn.Module"
    )


if "transformers.activations" in sys.modules:
    register_hf_activations()
