"""Keep a Hugging Face model's config in step with its activation modules, so that ``save_pretrained`` /
``from_pretrained`` rebuild the activations the model was trained with.

A Hugging Face model builds its activations from strings in its config (``hidden_act`` for BERT and MiniLM,
``activation`` for DistilBERT, ``activation_function`` for GPT-2 and BART, ``feed_forward_proj`` for T5, and the
same keys in sub-configs such as CLIP's ``text_config``). Swapping the modules without the strings gives a model
that saves fine and loads back with its old activations. HeLU's alpha is a buffer, so each module's alpha travels
in the weights; what the config must carry is the activation's name. Whatever it cannot carry (a factory with no
registry name, NaiveHeLU's Python-float alpha, a key that also feeds modules left alone) is reported by
:func:`rebuild_mismatches`, which rebuilds the model from a saved-and-reloaded copy of its config on the meta
device (no memory, no weights) and compares the activation modules name by name.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .op import HeLU
from .reference import NaiveHeLU

__all__ = ["LossyActivationConfigWarning", "activation_config_keys", "rebuild_mismatches", "sync_activation_config",
           "warn_on_mismatches"]

_OURS = (HeLU, NaiveHeLU)


class LossyActivationConfigWarning(UserWarning):
    """``from_pretrained`` would rebuild some activation modules differently from the model being saved."""


def is_hf_model(model: nn.Module) -> bool:
    """Whether ``model`` is a transformers ``PreTrainedModel`` (without importing transformers)."""
    return any(cls.__name__ == "PreTrainedModel" and cls.__module__.startswith("transformers.")
               for cls in type(model).__mro__)


def _act_class(entry: Any) -> type | None:
    """The module class an ``ACT2CLS`` entry builds: a class, a ``(class, kwargs)`` pair or a ``partial``."""
    entry = entry[0] if isinstance(entry, tuple) else getattr(entry, "func", entry)
    return entry if isinstance(entry, type) else None


def _configs(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The config and its sub-configs (``text_config``, ``encoder``...), each with its dotted path."""
    yield prefix, config
    for key, value in vars(config).items():
        if hasattr(value, "to_dict") and hasattr(value, "model_type") and value is not config:
            yield from _configs(value, f"{prefix}{key}.")


def activation_config_keys(config: Any, replaced: set[type]) -> list[tuple[Any, str, str]]:
    """``(config, key, old_value)`` for every string in ``config`` (or a sub-config) that names an activation of
    one of the ``replaced`` classes in transformers' ``ACT2CLS``: ``"gelu"``, or T5's ``"gated-gelu"``."""
    from transformers.activations import ACT2CLS

    found = []
    for _, sub in _configs(config):
        for key, value in vars(sub).items():
            if not isinstance(value, str) or key.startswith("_"):
                continue
            name = value.rpartition("-")[2]
            if name in ACT2CLS and _act_class(ACT2CLS[name]) in replaced:
                found.append((sub, key, value))
    return found


def sync_activation_config(model: nn.Module, name: str, replaced: set[type],
                           activation: dict[str, Any] | None = None) -> list[str]:
    """Point every config key that built the ``replaced`` activation classes at the registry ``name``, and record
    a HeLU ``activation`` (``{"name": "helu", "alpha": 0.05}``) as ``config.helu_activation`` (any other name
    removes it); returns the keys set."""
    changed = []
    for sub, key, value in activation_config_keys(model.config, replaced):
        prefix, dash, _ = value.rpartition("-")
        setattr(sub, key, f"{prefix}{dash}{name}")
        changed.append(key)
    if activation is not None and name.startswith("helu"):
        model.config.helu_activation = dict(activation)
    elif hasattr(model.config, "helu_activation"):
        del model.config.helu_activation
    return changed


def _describe(module: nn.Module) -> str:
    """The class and, except for HeLU (whose alpha is a saved buffer), the settings a config cannot carry."""
    if isinstance(module, HeLU):
        return "HeLU"
    return f"{type(module).__name__}({module.extra_repr()})"


def _is_activation(module: nn.Module) -> bool:
    return isinstance(module, (*_OURS, nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.LeakyReLU, nn.ELU)) or (
        type(module).__module__.endswith("activations") and not list(module.parameters()))


def rebuild_mismatches(model: nn.Module) -> list[str]:
    """Activation modules that ``from_pretrained`` would build differently: ``"name: HeLU here, GELUActivation()
    after from_pretrained"``. The model is rebuilt from ``config.to_dict()`` on the meta device, so this costs
    no memory and reads no weights."""
    config = type(model.config).from_dict(copy.deepcopy(model.config.to_dict()))
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rebuilt = type(model)(config)
    rebuilt_modules = dict(rebuilt.named_modules())
    problems = []
    for name, module in model.named_modules():
        other = rebuilt_modules.get(name)
        if not name or not (_is_activation(module) or (other is not None and _is_activation(other))):
            continue
        here = _describe(module)
        there = "nothing" if other is None else _describe(other)
        if here != there:
            problems.append(f"{name}: {here} here, {there} after from_pretrained")
    return problems


def warn_on_mismatches(model: nn.Module, when: str) -> list[str]:
    """Warn (``LossyActivationConfigWarning``) when the config would not rebuild the model's activations; the
    message lists them and the fix. Returns the mismatches."""
    try:
        problems = rebuild_mismatches(model)
    except Exception as err:  # a model that cannot be rebuilt from its config alone (custom __init__ arguments)
        warnings.warn(f"{when}: could not check that {type(model).__name__}'s config rebuilds its activations "
                      f"({type(err).__name__}: {err}); after from_pretrained, check the activation modules by hand",
                      LossyActivationConfigWarning, stacklevel=3)
        return []
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        warnings.warn(
            f"{when}: {type(model).__name__}.from_pretrained would not rebuild {len(problems)} activation module(s) "
            f"as they are now: {shown}. A config stores one activation name per key and no per-module settings "
            "(HeLU's alpha is saved with the weights; NaiveHeLU's and other modules' settings are not). Swap with a "
            "registry name on the whole model, e.g. helu_lightning.replace_activations(model, {'name': 'helu', "
            "'alpha': 0.05}), which also sets the config; or rebuild the same swap after loading.",
            LossyActivationConfigWarning, stacklevel=3)
    return problems
