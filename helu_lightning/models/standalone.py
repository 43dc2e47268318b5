"""``model.py`` beside an exported ``model.safetensors``: plain-torch code that rebuilds a built-in backbone with
``nn.ReLU`` and loads the weights, so the export serves without helu_lightning:

    python -c "import runpy; model = runpy.run_path('exported/cifar10/model.py')['load']()"

Our own backbones (small_cnn, resnet18_cifar, wide_resnet, plain_mlp, plain_cnn) travel as their module's source,
which imports only torch; ``torchvision:<name>`` and ``timm:<name>`` as the library's constructor and kwargs, plus
the names of the layers that must become ``nn.ReLU`` where the library's default activation is not ReLU (GELU in
ConvNeXt, ...).
Values from the checkpoint enter the file only as checked Python literals.
"""

from __future__ import annotations

import inspect
import math
import runpy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .registry import _BACKBONES, IMAGE_SIZED, TORCHVISION_PREFIX
from .timm_models import TIMM_PREFIX, timm_reference
from .torchvision_models import _set_in_channels

__all__ = ["loader_source", "preprocess_source", "write_loader"]

OWN_BACKBONES = ("small_cnn", "resnet18_cifar", "wide_resnet", "plain_mlp", "plain_cnn")
LOAD = '''

def use_relu(model: nn.Module, names: list[str]) -> None:
    """Put nn.ReLU at each dotted name (where training had HeLU and the library default is another activation)."""
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.ReLU())


def load(path: str | None = None) -> nn.Module:
    """The exported model in eval mode, weights from ``path`` (default: model.safetensors beside this file)."""
    from safetensors.torch import load_file

    model = build()
    model.load_state_dict(load_file(str(path or Path(__file__).with_name("model.safetensors"))), strict=True)
    return model.eval()
'''
PREPROCESS = '''

def preprocess(images: Any) -> Any:
    """A float32 batch for ``load()``'s model from PIL images or image file paths, as the validation transform made
    it (PIL and numpy, no torchvision); ``CLASS_NAMES[i]`` names output ``i``."""
    import numpy as np
    import torch
    from PIL import Image

    items = images if isinstance(images, (list, tuple)) else [images]
    opened = [Image.open(i) if isinstance(i, (str, Path)) else i for i in items]
    return torch.from_numpy(np.stack([prepare_image(image, INPUT) for image in opened]))
'''


def _literal(value: Any, where: str) -> Any:
    """``value`` unchanged if it is plain data (so its ``repr`` is a Python literal), else ValueError."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, (list, tuple)):
        return [_literal(v, where) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _literal(v, where) for k, v in value.items()}
    raise ValueError(f"{where} holds {value!r}, which is not plain data; model.py takes only literals")


def _header(title: str, needs: str) -> str:
    return (f'"""{title}, exported by helu-train export: rebuilt with {needs} alone, HeLU served as nn.ReLU.\n\n'
            "    python -c \"import runpy; model = runpy.run_path('model.py')['load']()\"\n\"\"\"\n\n")


def _relu_layers(reference: nn.Module, replaced: list[str]) -> list[str]:
    """Names among ``replaced`` (HeLU in training) where ``reference`` does not already hold an nn.ReLU."""
    return [n for n in replaced if not isinstance(reference.get_submodule(n), nn.ReLU)]


def _own_source(name: str, num_classes: int, in_channels: int, options: dict[str, Any]) -> str:
    builder = _BACKBONES[name]
    module_source = inspect.getsource(sys.modules[builder.__module__])
    return (f"# {name}, exported by helu-train export. Needs torch and safetensors only:\n"
            "#     python -c \"import runpy; model = runpy.run_path('model.py')['load']()\"\n"
            f"{module_source}\n\n# Loading, written by helu-train export.\nfrom pathlib import Path  # noqa: E402\n\n"
            f"OPTIONS = {options!r}\n\n\ndef build() -> nn.Module:\n"
            f"    return {builder.__name__}({num_classes!r}, nn.ReLU, in_channels={in_channels!r}, **OPTIONS)\n{LOAD}")


def _torchvision_source(name: str, num_classes: int, in_channels: int, options: dict[str, Any],
                        replaced: list[str]) -> str:
    import torchvision

    kwargs = {k: v for k, v in options.items() if k != "replace"}
    reference = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        _set_in_channels(reference, in_channels)
    channels = f"\n{inspect.getsource(_set_in_channels)}" if in_channels != 3 else ""
    set_channels = f"    _set_in_channels(model, {in_channels!r})\n" if in_channels != 3 else ""
    return (_header(f"torchvision {name}", "torch and torchvision") +
            "from __future__ import annotations\n\nfrom pathlib import Path\n\n"
            "import torchvision\nfrom torch import nn\n\n"
            f"KWARGS = {dict(kwargs, num_classes=num_classes)!r}\nRELU_LAYERS = {_relu_layers(reference, replaced)!r}\n"
            f"{channels}\n\ndef build() -> nn.Module:\n"
            f"    model = torchvision.models.get_model({name!r}, weights=None, **KWARGS)\n{set_channels}"
            f"    use_relu(model, RELU_LAYERS)\n    return model\n{LOAD}")


def _timm_source(name: str, num_classes: int, in_channels: int, options: dict[str, Any],
                 replaced: list[str]) -> tuple[str, dict[str, Any]]:
    reference, kwargs = timm_reference(name, num_classes, in_channels, options, None)
    relu_layers = _relu_layers(reference, replaced)
    if relu_layers and options.get("use_act_layer", True):  # timm's default is not ReLU: ask for ReLU by name
        reference, kwargs = timm_reference(name, num_classes, in_channels, options, "relu")
        relu_layers = _relu_layers(reference, replaced)
    source = (_header(f"timm {name}", "torch and timm") +
              "from __future__ import annotations\n\nfrom pathlib import Path\n\nimport timm\nfrom torch import nn\n\n"
              f"KWARGS = {kwargs!r}\nRELU_LAYERS = {relu_layers!r}\n\n\ndef build() -> nn.Module:\n"
              f"    model = timm.create_model({name!r}, pretrained=False, **KWARGS)\n"
              f"    use_relu(model, RELU_LAYERS)\n    return model\n{LOAD}")
    return source, {"name": name, "kwargs": kwargs, "relu_layers": relu_layers}


def loader_source(hparams: Mapping[str, Any], replaced: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The text of ``model.py`` for a ``VisionClassifier``'s hyper-parameters and the names of its HeLU layers,
    plus a description of the recipe; None for a task or backbone it cannot describe (text models: the ``hf``
    folder loads with transformers alone; backbones added with ``register_backbone``)."""
    backbone = hparams.get("backbone")
    if not isinstance(backbone, str) or "num_classes" not in hparams:
        return None
    num_classes = _literal(hparams["num_classes"], "num_classes")
    in_channels = _literal(hparams.get("in_channels", 3), "in_channels")
    options = _literal(dict(hparams.get("backbone_options") or {}), "backbone_options")
    if backbone in IMAGE_SIZED:
        options.setdefault("image_size", _literal(hparams.get("image_size", 32), "image_size"))
    if backbone in OWN_BACKBONES:
        return _own_source(backbone, num_classes, in_channels, options), {"backbone": backbone, "needs": "torch"}
    if backbone.startswith(TORCHVISION_PREFIX):
        name = backbone[len(TORCHVISION_PREFIX):]
        source = _torchvision_source(name, num_classes, in_channels, options, replaced)
        return source, {"backbone": backbone, "needs": "torch, torchvision"}
    if backbone.startswith(TIMM_PREFIX):
        source, recipe = _timm_source(backbone[len(TIMM_PREFIX):], num_classes, in_channels, options, replaced)
        return source, {"backbone": backbone, "needs": "torch, timm", "timm": recipe}
    return None


def preprocess_source(contract: Mapping[str, Any]) -> str:
    """The part of ``model.py`` that turns raw images into the model's input: the recorded contract as a literal and
    :mod:`helu_lightning.serve.preprocess`'s functions (PIL and numpy only), plus ``preprocess(images)``."""
    from ..serve import preprocess

    contract = _literal(dict(contract), "the input contract")
    functions = "\n\n".join(inspect.getsource(f) for f in (preprocess.image_mode, preprocess.prepare_image))
    return ("\n\n# Preprocessing, written by helu-train export: the DataModule's validation transform.\n"
            "from typing import Any  # noqa: E402\n\n"
            f"INPUT = {contract!r}\nCLASS_NAMES = {contract.get('class_names')!r}\n\n\n{functions}{PREPROCESS}")


def write_loader(hparams: Mapping[str, Any], plain: nn.Module, replaced: list[str], path: Path,
                 inputs: Tensor, contract: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Write ``model.py`` at ``path`` (beside ``model.safetensors``), run its ``load()`` and check it reproduces
    ``plain`` on ``inputs``; return what the manifest records, or None when the backbone cannot be described. With an
    image ``contract`` the file also holds ``preprocess()`` and ``CLASS_NAMES``."""
    described = loader_source(hparams, replaced)
    if described is None or not isinstance(inputs, Tensor):
        return None
    source, recipe = described
    if contract is not None and contract.get("kind") == "image":
        source += preprocess_source(contract)
        recipe = {**recipe, "preprocess": True}
    path.write_text(source, encoding="utf-8")
    rebuilt = runpy.run_path(str(path))["load"]()
    with torch.no_grad():
        expected, found = plain(inputs), rebuilt(inputs)
    if not torch.equal(expected, found):
        diff = (expected - found).abs().max().item() if expected.shape == found.shape else math.inf
        raise RuntimeError(f"model.py does not rebuild the exported model (max abs diff {diff:.3g}); "
                           f"please report this for backbone {recipe['backbone']!r}")
    return {**recipe, "file": path.name, "bitwise_equal": True}
