"""CIFAR-style ResNets (He et al., 2016, Sec. 4.2): ResNet-20/32/56.

Three stages of ``n`` BasicBlocks at 16/32/64 channels (times ``width``), depth ``6n + 2``.
Where a block changes shape we use the paper's option B shortcut (1x1 conv + BN) rather than
option A's zero-padded identity: option A has no weights, so a pruning method would see a
different set of prunable layers than the projection shortcuts most sparse-training papers
report. The stem is a 3x3 stride-1 conv, so 28x28 single-channel inputs (Fashion-MNIST) work
as well as 32x32 RGB.
"""

from __future__ import annotations

import torch
from torch import nn

from growprune.tasks.classification.init import he_init

__all__ = ["BasicBlock", "CifarResNet", "resnet20", "resnet32", "resnet56", "scaled_channels"]


def scaled_channels(base: int, width: float) -> int:
    """``round(base * width)``, at least 1, so width 0.25 still builds a valid network."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, int(round(base * width)))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of depth ``6 * blocks_per_stage + 2`` for small images.

    Args:
        blocks_per_stage: ``n`` in the paper (3 -> ResNet-20, 5 -> 32, 9 -> 56).
        in_channels: input channels (3 for CIFAR, 1 for Fashion-MNIST).
        num_classes: output logits.
        width: multiplier on the 16/32/64 stage widths.
        zero_init_residual: start each block's last BN at zero so blocks begin as identities
            (Goyal et al., 2017); off by default to match the original paper.
    """

    def __init__(
        self,
        blocks_per_stage: int,
        in_channels: int = 3,
        num_classes: int = 10,
        width: float = 1.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if blocks_per_stage < 1 or in_channels < 1 or num_classes < 1:
            raise ValueError("blocks_per_stage, in_channels and num_classes must be >= 1")
        widths = [scaled_channels(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        in_planes = widths[0]
        stages = []
        for i, planes in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        he_init(self, self.fc)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet20(
    in_channels: int = 3, num_classes: int = 10, width: float = 1.0, zero_init_residual: bool = False
) -> CifarResNet:
    """ResNet-20 (0.27M parameters at width 1 with option-B shortcuts)."""
    return CifarResNet(3, in_channels, num_classes, width, zero_init_residual)


def resnet32(
    in_channels: int = 3, num_classes: int = 10, width: float = 1.0, zero_init_residual: bool = False
) -> CifarResNet:
    """ResNet-32 (0.47M parameters at width 1)."""
    return CifarResNet(5, in_channels, num_classes, width, zero_init_residual)


def resnet56(
    in_channels: int = 3, num_classes: int = 10, width: float = 1.0, zero_init_residual: bool = False
) -> CifarResNet:
    """ResNet-56 (0.86M parameters at width 1)."""
    return CifarResNet(9, in_channels, num_classes, width, zero_init_residual)
