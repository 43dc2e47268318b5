"""HeLU and the activation registry under one import: ``from helu_lightning.activations import HeLU, helu,
make_activation, ...``.

Where each piece lives: the op, ``helu`` and ``HeLU`` in ``helu_lightning.op``; its kernels and the switch
between them (``set_kernel``, ``use_kernel``) in ``helu_lightning.kernels``; the naive reference twin
``NaiveHeLU`` in ``helu_lightning.reference``; names, factories and the Hugging Face names in
``helu_lightning.registry``.
"""

from __future__ import annotations

from .kernels import get_kernel, kernel_for, set_kernel, use_kernel
from .op import DEFAULT_ALPHA, HeLU, check_alpha, helu
from .reference import NaiveHeLU
from .registry import (
    ActivationFactory,
    ActivationLike,
    ActivationSpec,
    activation_factory,
    available_activations,
    make_activation,
    register_activation,
    register_hf_activations,
)

__all__ = [
    "DEFAULT_ALPHA",
    "ActivationFactory",
    "ActivationLike",
    "ActivationSpec",
    "HeLU",
    "NaiveHeLU",
    "activation_factory",
    "available_activations",
    "check_alpha",
    "get_kernel",
    "helu",
    "kernel_for",
    "make_activation",
    "register_activation",
    "register_hf_activations",
    "set_kernel",
    "use_kernel",
]
