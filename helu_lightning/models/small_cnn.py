"""A small CNN for tiny grey-scale images (8x8 scikit-learn digits, 28x28 Fashion-MNIST): trains in seconds on CPU."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["SmallCNN"]


def _conv_bn_act(c_in: int, c_out: int, act: Callable[[], nn.Module]) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), act()]


class SmallCNN(nn.Module):
    """Two stages of (conv-BN-act) x2 + 2x2 max-pool, then dropout and a linear head on the flattened map.

    ``image_size`` fixes the head's input size (``image_size // 4`` squared), so it must match the data.
    """

    def __init__(
        self,
        num_classes: int,
        act: Callable[[], nn.Module],
        in_channels: int = 1,
        image_size: int = 8,
        width: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if image_size < 4:
            raise ValueError(
                f"SmallCNN needs images of at least 4x4 pixels (it pools twice), got image_size={image_size}"
            )
        if width < 1:
            raise ValueError(f"SmallCNN width must be a positive channel count such as 32, got {width}")
        self.features = nn.Sequential(
            *_conv_bn_act(in_channels, width, act),
            *_conv_bn_act(width, width, act),
            nn.MaxPool2d(2),
            *_conv_bn_act(width, 2 * width, act),
            *_conv_bn_act(2 * width, 2 * width, act),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * side * side, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
