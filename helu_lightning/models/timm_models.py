"""Any timm model by name (``pretrained=False``: nothing is downloaded), its activations made HeLU, and HeLU in
timm's own activation registry so that ``timm.create_model(name, act_layer="helu")`` works.

Which activations become HeLU: the model's main activation, through timm's ``act_layer`` argument where the
model takes one (whatever timm's default is: ReLU for ResNet, GELU for ConvNeXt/ViT, SiLU for EfficientNet,
Hardswish for MobileNetV3, ReLU6 for MobileNetV2), then every remaining module of the ``replace`` types
(default ReLU and GELU, torch's or timm's classes) through :func:`helu_lightning.surgery.replace_activations`.
Gates (Sigmoid, Hardsigmoid in squeeze-excite blocks) and any other type are left as they are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

from torch import nn

from ..activations import HeLU, NaiveHeLU
from ..errors import UserError
from ..registry import register_timm_activations
from ..surgery import find_activations, replace_activations

__all__ = ["TIMM_PREFIX", "activation_counts", "timm_classifier", "timm_reference"]

TIMM_PREFIX = "timm:"
_LOADING_OPTIONS = {"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir"}


def _activation_types(names: Sequence[str]) -> tuple[type[nn.Module], ...]:
    """Classes for names such as "ReLU", "GELU", "SiLU", "Hardswish": torch.nn's and timm's classes of that
    name, and timm's registry entry when it is a name timm knows ("gelu", "hard_swish")."""
    from timm.layers import activations, create_act

    if isinstance(names, str):
        names = [names]
    types: list[type[nn.Module]] = []
    for name in names:
        found = [getattr(nn, name, None), getattr(activations, name, None),
                 create_act._ACT_LAYER_DEFAULT.get(str(name).lower())]
        found = [c for c in found if isinstance(c, type) and issubclass(c, nn.Module)]
        if not found:
            raise UserError(f"replace lists activation class names such as 'ReLU', 'GELU', 'SiLU' or 'Hardswish' "
                            f"(torch.nn or timm.layers); {name!r} is not one")
        types.extend(c for c in found if c not in types)
    return tuple(types)


def _activation_counts(modules: Iterable[nn.Module]) -> dict[str, int]:
    kinds = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Hardswish,
             nn.Hardsigmoid, nn.Mish, nn.PReLU, HeLU, NaiveHeLU)
    counts = Counter(type(m).__name__ for m in modules
                     if isinstance(m, kinds) or type(m).__module__.endswith("activations"))
    return dict(sorted(counts.items()))


def activation_counts(model: nn.Module) -> dict[str, int]:
    """How many modules of each activation-like type ``model`` holds, e.g. ``{"HeLU": 49, "Sigmoid": 16}``."""
    return _activation_counts(model.modules())


def _fresh_activation(make: Callable[[], nn.Module], created: list[nn.Module], *args: Any, **kwargs: Any
                      ) -> nn.Module:
    """timm calls ``act_layer()`` or ``act_layer(inplace=True)``; either way the factory builds the module, and
    ``created`` remembers it so surgery leaves it alone (whatever the activation: helu, relu, silu...)."""
    module = make()
    created.append(module)
    return module


def _check_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UserError(f"unknown timm model {name!r}.{hint} List them with python -c \"import timm; "
                        "print(timm.list_models())\"")


def _create(name: str, kwargs: dict[str, Any], act_layer: Any) -> tuple[nn.Module, bool]:
    """timm.create_model with ``act_layer`` when the model takes it; returns the model and whether it did."""
    import timm

    if act_layer is not None:
        try:
            return timm.create_model(name, pretrained=False, act_layer=act_layer, **kwargs), True
        except TypeError as err:
            if "act_layer" not in str(err):
                raise
    return timm.create_model(name, pretrained=False, **kwargs), False


def timm_classifier(
    name: str,
    num_classes: int,
    act: Callable[[], nn.Module],
    in_channels: int = 3,
    replace: Sequence[str] = ("ReLU", "GELU"),
    use_act_layer: bool = True,
    **options: Any,
) -> nn.Module:
    """timm's ``name`` untrained with ``num_classes`` outputs and ``in_channels`` inputs; its ``act_layer`` (unless
    ``use_act_layer`` is false) and every ``replace``-typed activation left over become fresh ``act()`` modules.
    ``options`` go to ``timm.create_model`` (e.g. ``drop_rate``). Logs what was replaced and what was left."""
    from lightning.pytorch.utilities import rank_zero_info

    try:
        import timm  # noqa: F401
    except ImportError as err:
        raise UserError(f"backbone timm:{name} needs timm: pip install 'helu-lightning[timm]'") from err
    register_timm_activations()
    _check_name(name)
    if "act_layer" in options:
        raise UserError("timm:<name> sets act_layer from `activation`; drop act_layer from backbone_options (and set "
                        "use_act_layer: false to keep the model's own activation)")
    for key in ("num_classes", "in_chans"):
        if key in options:
            raise UserError(f"backbone_options.{key} is set by the task (num_classes / in_channels); remove it")
    for key in _LOADING_OPTIONS & set(options):
        # A config or checkpoint from someone else must not make us read (or unpickle) files or download weights.
        raise UserError(f"backbone_options.{key} would make timm load weights; timm:<name> builds untrained models "
                        "only, so remove it (start from trained weights with `helu-train fit --ckpt_path`)")
    types = _activation_types(replace)
    kwargs = {"num_classes": num_classes, "in_chans": in_channels, **options}
    created: list[nn.Module] = []
    model, used_act_layer = _create(name, kwargs, partial(_fresh_activation, act, created) if use_act_layer else None)
    ours = {id(m) for m in created}
    through_act_layer = sum(1 for _, m in model.named_modules(remove_duplicate=False) if id(m) in ours)
    leftover = [n for n in find_activations(model, types) if id(model.get_submodule(n)) not in ours]
    if not leftover and not through_act_layer:
        present = activation_counts(model)
        raise UserError(f"timm:{name} has no activation to make HeLU: {present or 'none found'}; it takes no "
                        "act_layer here, so list its classes in backbone_options.replace, e.g. replace: [SiLU]")
    # Surgery may swap act_layer's modules too when the activation is itself a target type (gelu for a GELU
    # model): a fresh module of the same spec, so nothing changes.
    made = replace_activations(model, act, targets=types, strict=False)
    ours |= {id(model.get_submodule(n)) for n in made}
    left = _activation_counts(m for m in model.modules() if id(m) not in ours)
    replaced = "/".join([replace] if isinstance(replace, str) else replace)
    rank_zero_info(f"timm:{name}: {through_act_layer} activations set through act_layer"
                   f"{'' if used_act_layer else ' (the model takes none)'}, {len(leftover)} {replaced} replaced; "
                   f"left as they are: {left or 'nothing'}")
    return model


def timm_reference(name: str, num_classes: int, in_channels: int, options: dict[str, Any], act_layer: str | None
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """The plain timm model an exported ``timm:<name>`` backbone loads into, and its ``timm.create_model`` kwargs
    (``act_layer`` among them when given and the model takes it)."""
    kwargs = {k: v for k, v in options.items() if k not in ("replace", "use_act_layer")}
    kwargs.update(num_classes=num_classes, in_chans=in_channels)
    model, used = _create(name, kwargs, act_layer)
    if used:
        kwargs["act_layer"] = act_layer
    return model, kwargs
