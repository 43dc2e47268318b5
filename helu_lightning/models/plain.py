"""Plain stacks without residual connections, for dying-unit studies: ``PlainMLP`` (``depth`` linear-act layers)
and ``PlainCNN`` (``depth`` conv3x3-act layers), each optionally with BatchNorm before every activation, and with
PyTorch's default initialisation or He's (``init="kaiming"``).

Without normalisation or shortcuts, a ReLU unit whose pre-activation turns negative on every input gets no
gradient and stays dead; depth makes that more likely. PyTorch's default initialisation (uniform, gain 1/sqrt(3))
shrinks the signal at every layer, so deep stacks start with small pre-activations; He's initialisation (normal,
std sqrt(2 / fan_in), zero bias) keeps their scale. ``norm="batch"`` and ``init="kaiming"`` show where the effect
goes away.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["INITS", "NORMS", "PlainCNN", "PlainMLP"]

NORMS = ("none", "batch")
INITS = ("default", "kaiming")


def _check(name: str, depth: int, width: int, norm: str, image_size: int, init: str) -> None:
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"{name} depth must be the number of hidden layers (an integer >= 1, e.g. 8), got {depth!r}")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"{name} width must be a positive unit count such as 32, got {width!r}")
    if norm not in NORMS:
        raise ValueError(f"{name} norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if init not in INITS:
        raise ValueError(f"{name} init must be one of {', '.join(INITS)} (PyTorch's or He's), got {init!r}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"{name} image_size must be the input's side in pixels (e.g. 8 for digits), "
                         f"got {image_size!r}")


def _init(layers: list[nn.Module], init: str) -> None:
    """He's initialisation (fan-in, ReLU gain: std sqrt(2 / fan_in)) and zero bias for the hidden layers, or
    PyTorch's default (left as built)."""
    if init != "kaiming":
        return
    for layer in layers:
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class PlainMLP(nn.Module):
    """Flatten, then ``depth`` x (Linear [+ BatchNorm1d] + act) of ``width`` units, then a linear head; ``init``
    (``default`` or ``kaiming``) initialises the hidden layers."""

    def __init__(self, num_classes: int, act: Callable[[], nn.Module], in_channels: int = 1, image_size: int = 8,
                 depth: int = 8, width: int = 32, norm: str = "none", init: str = "default") -> None:
        super().__init__()
        _check("PlainMLP", depth, width, norm, image_size, init)
        layers: list[nn.Module] = [nn.Flatten()]
        size = in_channels * image_size * image_size
        for _ in range(depth):
            layers.append(nn.Linear(size, width, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(width))
            layers.append(act())
            size = width
        _init(layers, init)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        self.in_features = in_channels * image_size * image_size

    def forward(self, x: Tensor) -> Tensor:
        if x[0].numel() != self.in_features:
            raise ValueError(f"PlainMLP was built for {self.in_features} input values per image (in_channels x "
                             f"image_size^2) but got images of shape {tuple(x.shape[1:])}; set image_size (and "
                             "in_channels) to the data's")
        return self.head(self.features(x))


class PlainCNN(nn.Module):
    """``depth`` x (conv3x3 [+ BatchNorm2d] + act) of ``width`` channels, a 2x2 max-pool after the first half
    (when the image is at least 4 pixels wide), global average pooling and a linear head."""

    def __init__(self, num_classes: int, act: Callable[[], nn.Module], in_channels: int = 1, image_size: int = 8,
                 depth: int = 8, width: int = 16, norm: str = "none", init: str = "default") -> None:
        super().__init__()
        _check("PlainCNN", depth, width, norm, image_size, init)
        layers: list[nn.Module] = []
        channels = in_channels
        for index in range(depth):
            layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(width))
            layers.append(act())
            channels = width
            if index == (depth - 1) // 2 and image_size >= 4:
                layers.append(nn.MaxPool2d(2))
        _init(layers, init)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
