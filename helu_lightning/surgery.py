"""Model surgery: swap the activation modules of any model (torchvision, timm-style, Hugging Face) for fresh
modules from an activation factory; a Hugging Face model's config is updated to match, so that
``save_pretrained`` / ``from_pretrained`` rebuild the new activations."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

from . import hf_config
from .op import HeLU
from .reference import NaiveHeLU
from .registry import ActivationFactory, activation_factory, registry_name

__all__ = ["default_targets", "find_activations", "replace_activations"]


def default_targets() -> tuple[type[nn.Module], ...]:
    """ReLU, GELU and, when transformers is installed, its GELU activation classes (BERT's FFN uses these)."""
    targets: list[type[nn.Module]] = [nn.ReLU, nn.GELU]
    try:
        from transformers import activations as hf
    except ImportError:
        return tuple(targets)
    for name in ("GELUActivation", "NewGELUActivation", "FastGELUActivation", "QuickGELUActivation",
                 "GELUTanh", "PytorchGELUTanh", "AccurateGELUActivation"):
        cls = getattr(hf, name, None)
        if isinstance(cls, type) and cls not in targets:
            targets.append(cls)
    return tuple(targets)


def _target_types(targets: type[nn.Module] | Iterable[type[nn.Module]] | None) -> tuple[type[nn.Module], ...]:
    if targets is None:
        return default_targets()
    types = (targets,) if isinstance(targets, type) else tuple(targets)
    if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise TypeError(f"targets must be nn.Module classes such as (nn.ReLU, nn.GELU), got {targets!r}")
    return types


def find_activations(
    model: nn.Module, targets: type[nn.Module] | Iterable[type[nn.Module]] | None = None
) -> list[str]:
    """Dotted names of every submodule of the target types; an instance registered under two names is listed
    under both. The model itself is never listed: surgery replaces children."""
    types = _target_types(targets)
    named = model.named_modules(remove_duplicate=False)
    return [name for name, module in named if name and isinstance(module, types)]


def replace_activations(
    model: nn.Module,
    factory: Callable[[], nn.Module] | str | dict,
    targets: type[nn.Module] | Iterable[type[nn.Module]] | None = None,
    strict: bool = True,
) -> list[str]:
    """Replace each activation module of the ``targets`` types by a fresh module from ``factory``.

    ``factory`` is a zero-argument callable; for convenience at the prompt this user-facing function also takes
    what ``activation_factory`` takes (``"relu"``, ``{"name": "helu", "alpha": 0.01}``), unlike the builders.

    Every dotted name gets its own new module, so an instance registered under two names is unshared.
    (A module *called* twice from one forward, like torchvision's ``BasicBlock.relu``, keeps one name and so
    one new module; that is correct, as activations hold no per-call state.) Returns the replaced names.
    Raises ValueError when nothing matches, unless ``strict=False``.

    In a Hugging Face model (``model`` itself or any submodule), the config keys that built the replaced
    activations (``hidden_act``, ``activation``, ``activation_function``, ``feed_forward_proj``...) are set to
    the factory's registry name and ``config.helu_activation`` records its settings, so ``save_pretrained`` /
    ``from_pretrained`` (with helu_lightning imported) rebuild the same modules; each HeLU's alpha travels in the
    weights. Where the config cannot say it (a factory with no registry name, a key that also feeds modules left
    alone), a ``LossyActivationConfigWarning`` lists the modules, now and again at ``save_pretrained``.
    """
    make = activation_factory(factory)
    types = _target_types(targets)
    names = find_activations(model, types)
    if not names and strict:
        present = sorted({type(m).__name__ for m in model.modules() if _looks_like_activation(m)})
        raise ValueError(
            f"no activation of type {[t.__name__ for t in types]} found in {type(model).__name__}"
            f"{'; it has ' + ', '.join(present) if present else ''}. Pass targets=(...) with the classes to "
            "replace, or strict=False to allow a model without them."
        )
    old_types = {name: type(model.get_submodule(name)) for name in names}
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = make()
        if not isinstance(new, nn.Module):
            raise TypeError(f"the activation factory returned {type(new).__name__}, not an nn.Module")
        setattr(parent, child, new)
    for prefix, hf_model in _hf_models(model):
        replaced = {t for name, t in old_types.items() if not prefix or name.startswith(prefix + ".")}
        if replaced:
            _sync_config(hf_model, make, replaced)
    return names


def _hf_models(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost Hugging Face models in ``model`` (itself included), with their dotted names."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if hf_config.is_hf_model(module) and not any(not p or name.startswith(p + ".") for p, _ in found):
            found.append((name, module))
    return found


def _sync_config(model: nn.Module, make: Callable[[], nn.Module], replaced: set[type[nn.Module]]) -> None:
    """Name the new activation in the config where a registry name exists, then warn about whatever the config
    still would not rebuild."""
    name = make.name if isinstance(make, ActivationFactory) else registry_name(make)
    if name is not None:
        settings = make.to_dict() if isinstance(make, ActivationFactory) else {"name": name}
        hf_config.sync_activation_config(model, name, replaced, settings)
    hf_config.warn_on_mismatches(model, "replace_activations")


def _looks_like_activation(module: nn.Module) -> bool:
    activation_modules = (nn.ReLU, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Hardswish,
                          nn.Mish, nn.ReLU6, HeLU, NaiveHeLU)
    return isinstance(module, activation_modules) or type(module).__module__.endswith("activations")
