"""ResNet-50 for ImageNet-sized inputs, laid out exactly like ``torchvision.models.resnet50``.

torchvision does not run beside the CPU torch build here, so this is a re-implementation. We
keep torchvision's module names and order (``conv1, bn1, layer1..4, fc``; ``Bottleneck`` with
``conv1..3``, ``bn1..3``, ``downsample``) and its "v1.5" placement of the stride on the 3x3
conv, so the parameter count (25,557,032) and state-dict keys match published checkpoints and
per-layer sparsity tables from the literature line up layer for layer.
"""

from __future__ import annotations

import torch
from torch import nn

from growprune.tasks.classification.init import he_init
from growprune.tasks.classification.resnet_cifar import scaled_channels

__all__ = ["Bottleneck", "ImageNetResNet", "resnet50"]


class Bottleneck(nn.Module):
    """1x1 reduce - 3x3 (carries the stride) - 1x1 expand (x4), plus shortcut, then ReLU."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ImageNetResNet(nn.Module):
    """Bottleneck ResNet with the ImageNet stem (7x7/2 conv, 3x3/2 max-pool).

    Args:
        layers: bottleneck blocks per stage, ``[3, 4, 6, 3]`` for ResNet-50.
        num_classes: output logits.
        in_channels: input channels.
        width: multiplier on the 64/128/256/512 stage widths (and the 64-channel stem).
        zero_init_residual: zero each block's last BN scale (torchvision's option of the
            same name); off by default, as in torchvision.
    """

    def __init__(
        self,
        layers: list[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        width: float = 1.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1 or len(layers) != 4:
            raise ValueError("need in_channels, num_classes >= 1 and four stages")
        self.inplanes = scaled_channels(64, width)
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        planes = [scaled_channels(c, width) for c in (64, 128, 256, 512)]
        self.layer1 = self._make_layer(planes[0], layers[0], stride=1)
        self.layer2 = self._make_layer(planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * Bottleneck.expansion, num_classes)

        he_init(self)  # the fc layer keeps PyTorch's default, as in torchvision
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = out
        layers += [Bottleneck(out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(
    num_classes: int = 1000,
    in_channels: int = 3,
    width: float = 1.0,
    zero_init_residual: bool = False,
) -> ImageNetResNet:
    """ResNet-50: 25,557,032 parameters at width 1 with 1000 classes."""
    return ImageNetResNet([3, 4, 6, 3], num_classes, in_channels, width, zero_init_residual)
