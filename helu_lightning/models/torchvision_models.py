"""Any torchvision classification model by name (``weights=None``: nothing is downloaded), its activations
swapped for the factory's through :func:`helu_lightning.surgery.replace_activations`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from ..surgery import replace_activations

__all__ = ["torchvision_classifier", "torchvision_classifiers"]


def torchvision_classifiers() -> list[str]:
    """Names of torchvision's classification models (``torchvision.models.list_models(torchvision.models)``)."""
    import torchvision  # on first use: importing helu_lightning.models stays fast

    return torchvision.models.list_models(module=torchvision.models)


def _activation_types(names: Sequence[str]) -> tuple[type[nn.Module], ...]:
    types = []
    for name in names:
        cls = getattr(nn, name, None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(
                f"replace lists torch.nn activation class names such as 'ReLU' or 'ReLU6'; {name!r} is not one"
            )
        types.append(cls)
    return tuple(types)


def _set_in_channels(model: nn.Module, in_channels: int) -> None:
    """Rebuild the first Conv2d so the model takes ``in_channels`` instead of 3 (e.g. 1 for grey images)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                raise ValueError(f"{type(model).__name__}'s first conv is grouped; it takes 3 input channels only")
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, nn.Conv2d(
                in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                module.dilation, 1, module.bias is not None,
                module.padding_mode,
            ))
            return
    raise ValueError(f"{type(model).__name__} has no Conv2d whose input channels could be set to {in_channels}")


def torchvision_classifier(
    name: str,
    num_classes: int,
    act: Callable[[], nn.Module],
    in_channels: int = 3,
    replace: Sequence[str] = ("ReLU", "GELU"),
    **options: Any,
) -> nn.Module:
    """Build torchvision's ``name`` untrained with ``num_classes`` outputs and every ``replace``-typed activation
    swapped for a fresh ``act()``. ``options`` go to the torchvision builder (e.g. ``dropout`` for VGG)."""
    known = torchvision_classifiers()
    if name not in known:
        raise ValueError(f"unknown torchvision classification model {name!r}; choose one of: {', '.join(known)}")
    import torchvision

    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    if in_channels != 3:
        _set_in_channels(model, in_channels)
    replace_activations(model, act, targets=_activation_types(replace))
    return model
