"""Wide ResNet (Zagoruyko & Komodakis 2016): pre-activation blocks, widths 16-16k-32k-64k; WRN-40-4 is the paper's."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["WideBasicBlock", "WideResNet"]


class WideBasicBlock(nn.Module):
    """BN-act-conv3x3, BN-act-dropout-conv3x3; the shortcut is a 1x1 conv on the activated input when shapes change."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.act1 = act()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = act()
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.act1(self.bn1(x))
        out = self.conv2(self.dropout(self.act2(self.bn2(self.conv1(pre)))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-``depth``-``width``: ``(depth - 4) / 6`` blocks per stage, three stages at strides 1, 2, 2."""

    def __init__(
        self,
        num_classes: int,
        act: Callable[[], nn.Module],
        in_channels: int = 3,
        depth: int = 40,
        width: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}")
        if width < 1:
            raise ValueError(f"WideResNet width (widening factor k) must be >= 1, got {width}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"WideResNet dropout must be in [0, 1), got {dropout}")
        n = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False)
        blocks, c_in = [], channels[0]
        for stage, c_out in enumerate(channels[1:]):
            for i in range(n):
                blocks.append(WideBasicBlock(c_in, c_out, 2 if (stage > 0 and i == 0) else 1, dropout, act))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)
        self.act = act()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn(self.blocks(self.stem(x))))
        return self.fc(self.pool(out).flatten(1))
