"""``build_backbone(name, num_classes, act)``: every vision backbone by name, so configs choose one by string."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn

from ..registry import require_factory
from .plain import PlainCNN, PlainMLP
from .resnet import resnet18_cifar
from .small_cnn import SmallCNN
from .timm_models import TIMM_PREFIX, timm_classifier
from .torchvision_models import torchvision_classifier
from .wide_resnet import WideResNet

__all__ = ["IMAGE_SIZED", "TIMM_PREFIX", "TORCHVISION_PREFIX", "available_backbones", "build_backbone",
           "register_backbone"]

TORCHVISION_PREFIX = "torchvision:"

# Each builder takes (num_classes, act, in_channels=..., **options) and returns an nn.Module producing logits.
_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet18_cifar": resnet18_cifar,
    "wide_resnet": WideResNet,
    "plain_mlp": PlainMLP,
    "plain_cnn": PlainCNN,
}
# Built-in backbones whose layers are sized by the image side: tasks pass them ``image_size``.
IMAGE_SIZED = ("small_cnn", "plain_mlp", "plain_cnn")


def available_backbones() -> list[str]:
    """Registered backbone names, sorted; any torchvision classifier is also available as ``torchvision:<name>``
    and any timm model as ``timm:<name>``."""
    return sorted(_BACKBONES)


def register_backbone(name: str, builder: Callable[..., nn.Module], overwrite: bool = False) -> None:
    """Add ``builder(num_classes, act, in_channels=..., **options)`` under ``name``."""
    if name in _BACKBONES and not overwrite:
        raise ValueError(f"backbone {name!r} is already registered; pass overwrite=True to replace it")
    for prefix in (TORCHVISION_PREFIX, TIMM_PREFIX):
        if name.startswith(prefix):
            raise ValueError(f"backbone names starting with {prefix!r} are reserved for {prefix[:-1]} models")
    _BACKBONES[name] = builder


def build_backbone(
    name: str, num_classes: int, act: Callable[[], nn.Module], in_channels: int = 3, **options: Any
) -> nn.Module:
    """Build backbone ``name`` with ``num_classes`` logits and every activation a fresh ``act()`` (a zero-argument
    factory: ``activation_factory(spec)`` makes one from a name or mapping)."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer (3 for RGB, 1 for grey), got {in_channels!r}")
    make = require_factory(act, "build_backbone")
    if name.startswith(TORCHVISION_PREFIX):
        return torchvision_classifier(name[len(TORCHVISION_PREFIX):], num_classes, make, in_channels, **options)
    if name.startswith(TIMM_PREFIX):
        return timm_classifier(name[len(TIMM_PREFIX):], num_classes, make, in_channels, **options)
    if name not in _BACKBONES:
        close = difflib.get_close_matches(name, _BACKBONES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown backbone {name!r}.{hint} Known backbones: {', '.join(available_backbones())}, or any torchvision "
            f"classifier as '{TORCHVISION_PREFIX}<name>' (e.g. '{TORCHVISION_PREFIX}resnet18'), or any timm model as "
            f"'{TIMM_PREFIX}<name>' (e.g. '{TIMM_PREFIX}resnet26d')."
        )
    try:
        return _BACKBONES[name](num_classes, make, in_channels=in_channels, **options)
    except TypeError as err:
        raise TypeError(f"backbone {name!r} does not take options {sorted(options)}: {err}") from err
