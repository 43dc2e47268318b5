"""helu-lightning: train with HeLU (ReLU forward, hysteresis backward), serve as plain ReLU."""

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
from .registry import install_hf_hooks, install_timm_hook, register_timm_activations
from .surgery import find_activations, replace_activations

install_hf_hooks()  # "helu" as a Hugging Face hidden_act, once transformers is imported (never imports it)
install_timm_hook()  # act_layer="helu" in timm, once timm is imported (never imports it)

__version__ = "0.1.0"

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
