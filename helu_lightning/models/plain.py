"""Plain stacks without residual connections, for dying-unit studies: ``PlainMLP`` (``depth`` linear-act layers)
and ``PlainCNN`` (``depth`` conv3x3-act layers), each optionally with BatchNorm before every activation.

Without normalisation or shortcuts, a ReLU unit whose pre-activation turns negative on every input gets no
gradient and stays dead; depth makes that more likely. ``norm="batch"`` shows where the effect goes away.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["NORMS", "PlainCNN", "PlainMLP"]

NORMS = ("none", "batch")


def _check(name: str, depth: int, width: int, norm: str, image_size: int) -> None:
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"{name} depth must be the number of hidden layers (an integer >= 1, e.g. 8), got {depth!r}")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"{name} width must be a positive unit count such as 32, got {width!r}")
    if norm not in NORMS:
        raise ValueError(f"{name} norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"{name} image_size must be the input's side in pixels (e.g. 8 for digits), "
                         f"got {image_size!r}")


class PlainMLP(nn.Module):
    """Flatten, then ``depth`` x (Linear [+ BatchNorm1d] + act) of ``width`` units, then a linear head."""

    def __init__(self, num_classes: int, act: Callable[[], nn.Module], in_channels: int = 1, image_size: int = 8,
                 depth: int = 8, width: int = 32, norm: str = "none") -> None:
        super().__init__()
        _check("PlainMLP", depth, width, norm, image_size)
        layers: list[nn.Module] = [nn.Flatten()]
        size = in_channels * image_size * image_size
        for _ in range(depth):
            layers.append(nn.Linear(size, width, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(width))
            layers.append(act())
            size = width
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
                 depth: int = 8, width: int = 16, norm: str = "none") -> None:
        super().__init__()
        _check("PlainCNN", depth, width, norm, image_size)
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
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
