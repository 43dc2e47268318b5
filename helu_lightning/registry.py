"""The activation registry: names in configs -> fresh modules, the factory a spec becomes at the task boundary,
and our names in other libraries' registries: Hugging Face (``config.hidden_act="helu"``) and timm
(``timm.create_model(name, act_layer="helu")``).

Those are registered by post-import hooks (``wrapt``) that ``import helu_lightning`` installs: they appear when
``transformers.activations`` or ``timm.layers.create_act`` is imported, before or after helu_lightning, and
neither library is ever imported for users who do not use it.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType
from typing import Any

from torch import nn

from .op import HeLU
from .reference import NaiveHeLU

__all__ = [
    "ActivationFactory",
    "ActivationLike",
    "ActivationSpec",
    "activation_factory",
    "available_activations",
    "make_activation",
    "register_activation",
    "register_hf_activations",
    "register_timm_activations",
    "registry_name",
    "require_factory",
]

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


def registry_name(builder: object) -> str | None:
    """The registry name under which exactly ``builder`` (a class such as ``HeLU``) is registered, else None."""
    return next((key for key, value in _REGISTRY.items() if value is builder), None)


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


def register_hf_activations(hf: ModuleType | None = None) -> None:
    """Make every registry name valid as a Hugging Face ``config.hidden_act`` (``ACT2CLS`` / ``ACT2FN``).

    Runs by itself when ``transformers.activations`` is imported (a hook that ``import helu_lightning``
    installs); call it directly only after registering names while transformers is loaded, which
    ``register_activation`` already does.
    """
    if hf is None:
        from transformers import activations as hf
    for key, builder in _REGISTRY.items():
        if key not in hf.ACT2CLS or key in ("helu", "helu_naive"):
            hf.ACT2CLS[key] = builder
            hf.ACT2FN[key] = builder


def _reset_missing_alpha(modeling_utils: ModuleType) -> None:
    """Give HeLU layers that a Hugging Face checkpoint lacks (GELU weights loaded with ``hidden_act="helu"``)
    the default alpha: transformers materialises missing buffers with ``torch.empty`` and initialises only
    the module types its models know, through ``PreTrainedModel._initialize_weights``, which this wraps."""
    model_class = modeling_utils.PreTrainedModel
    original = model_class._initialize_weights
    if getattr(original, "resets_helu_alpha", False):
        return

    def _initialize_weights(self: Any, module: nn.Module, *args: Any, **kwargs: Any) -> None:
        loaded = getattr(module, "_is_hf_initialized", False) or getattr(getattr(module, "alpha", None),
                                                                           "_is_hf_initialized", False)
        if isinstance(module, HeLU) and not loaded:
            module.reset_parameters()
        original(self, module, *args, **kwargs)

    _initialize_weights.resets_helu_alpha = True  # type: ignore[attr-defined]
    model_class._initialize_weights = _initialize_weights


def _warn_on_lossy_save(modeling_utils: ModuleType) -> None:
    """Make ``PreTrainedModel.save_pretrained`` warn when the saved config would rebuild a model holding HeLU
    modules with other activations (see ``helu_lightning.hf_config``); the save itself is unchanged."""
    model_class = modeling_utils.PreTrainedModel
    original = model_class.save_pretrained
    if getattr(original, "checks_helu_config", False):
        return

    def save_pretrained(self: Any, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(m, (HeLU, NaiveHeLU)) for m in self.modules()):
            from .hf_config import warn_on_mismatches

            warn_on_mismatches(self, "save_pretrained")
        return original(self, *args, **kwargs)

    save_pretrained.checks_helu_config = True  # type: ignore[attr-defined]
    save_pretrained.__doc__ = original.__doc__
    model_class.save_pretrained = save_pretrained


def _patch_modeling_utils(modeling_utils: ModuleType) -> None:
    _reset_missing_alpha(modeling_utils)
    _warn_on_lossy_save(modeling_utils)


def _register_into_timm(create_act: ModuleType) -> None:
    create_act._ACT_LAYER_DEFAULT.update({"helu": HeLU, "helu_naive": NaiveHeLU})  # timm has relu, gelu, silu...


def register_timm_activations() -> None:
    """Add HeLU (``helu``) and NaiveHeLU (``helu_naive``) to timm's activation registry, so
    ``timm.create_model(name, act_layer="helu")`` builds HeLU layers. Imports timm."""
    from timm.layers import create_act

    _register_into_timm(create_act)


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




def require_factory(make: Any, caller: str) -> Callable[[], nn.Module]:
    """Return ``make`` if it is a zero-argument activation factory; a spec (name, mapping, ActivationSpec) is
    refused: specs are converted once, at the task boundary, with ``activation_factory``."""
    if isinstance(make, (str, Mapping, ActivationSpec, nn.Module)) or not callable(make):
        raise TypeError(f"{caller} takes a zero-argument activation factory, got {make!r}; turn a name or "
                        f"mapping into one with helu_lightning.activation_factory(spec)")
    return make
