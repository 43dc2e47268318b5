"""ResNet for 32x32 images (He et al. 2016, CIFAR variant): 3x3 stem, no max-pool, four stages of basic blocks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

__all__ = ["BasicBlock", "CifarResNet", "resnet18_cifar"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv) shortcut; one activation module per use."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = act()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = act()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet with a 3x3 stride-1 stem and no max-pool, so 32x32 inputs keep resolution in the first stage."""

    def __init__(
        self,
        blocks: Sequence[int],
        num_classes: int,
        act: Callable[[], nn.Module],
        in_channels: int = 3,
        width: int = 64,
    ) -> None:
        super().__init__()
        if len(blocks) == 0 or any(n < 1 for n in blocks):
            raise ValueError(f"blocks must list at least one stage of >= 1 block each, e.g. [2, 2, 2, 2]; got {blocks}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), act())
        stages, c_in = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            for j in range(n):
                stages.append(BasicBlock(c_in, c_out, 2 if (i > 0 and j == 0) else 1, act))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


def resnet18_cifar(
    num_classes: int, act: Callable[[], nn.Module], in_channels: int = 3, width: int = 64
) -> CifarResNet:
    """ResNet-18 for CIFAR: blocks (2, 2, 2, 2), widths 64-128-256-512 at ``width=64``."""
    return CifarResNet((2, 2, 2, 2), num_classes, act, in_channels=in_channels, width=width)
