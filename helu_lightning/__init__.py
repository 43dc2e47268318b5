"""helu-lightning: train with HeLU (ReLU forward, hysteresis backward), serve as plain ReLU.

The names below are imported on first use (PEP 562), so ``import helu_lightning`` costs no torch: ``helu-train
serve`` and its workers run on onnxruntime alone, and ``helu-train --help`` starts at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import wrapt

__version__ = "0.1.0"

# public name -> the module that defines it
_FACE = {
    **dict.fromkeys(
        ["ActivationFactory", "ActivationSpec", "HeLU", "NaiveHeLU", "activation_factory", "available_activations",
         "check_alpha", "helu", "make_activation", "register_activation", "register_hf_activations", "set_kernel",
         "use_kernel"],
        "helu_lightning.activations",
    ),
    "register_timm_activations": "helu_lightning.registry",
    "find_activations": "helu_lightning.surgery",
    "replace_activations": "helu_lightning.surgery",
}

__all__ = [
    "ActivationFactory",
    "ActivationSpec",
    "HeLU",
    "NaiveHeLU",
    "__version__",
    "activation_factory",
    "available_activations",
    "check_alpha",
    "find_activations",
    "helu",
    "make_activation",
    "register_activation",
    "register_hf_activations",
    "register_timm_activations",
    "replace_activations",
    "set_kernel",
    "use_kernel",
]

# "helu" as a Hugging Face hidden_act and as timm's act_layer, registered when those libraries are imported
# (at once if they already are); the registry, and with it torch, is imported only then.
wrapt.register_post_import_hook("helu_lightning.registry:register_hf_activations", "transformers.activations")
wrapt.register_post_import_hook("helu_lightning.registry:_patch_modeling_utils", "transformers.modeling_utils")
wrapt.register_post_import_hook("helu_lightning.registry:_register_into_timm", "timm.layers.create_act")


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module 'helu_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FACE})


if TYPE_CHECKING:
    from .activations import (
        ActivationFactory,
        ActivationSpec,
        HeLU,
        NaiveHeLU,
        activation_factory,
        available_activations,
        check_alpha,
        helu,
        make_activation,
        register_activation,
        register_hf_activations,
        set_kernel,
        use_kernel,
    )
    from .registry import register_timm_activations
    from .surgery import find_activations, replace_activations
