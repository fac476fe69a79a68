"""A small, fast CNN for Fashion-MNIST-sized inputs.

Designed for 2-core CPU runners: the expensive 3x3 convolutions run after the first pooling
(at 14x14 and 7x7), so one training epoch over Fashion-MNIST takes well under a minute, while
BatchNorm and four conv layers still reach >90% test accuracy in a few epochs.
"""

from __future__ import annotations

import torch
from torch import nn

from growprune.tasks.classification.init import he_init

__all__ = ["SmallCNN"]


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """conv(w) - pool - conv(w) - conv(2w) - pool - conv(2w) - flatten(7x7) - linear.

    Every conv is followed by BatchNorm and ReLU. The classifier sees the full 7x7 map: on
    Fashion-MNIST that gave ~92% test accuracy after 3 epochs versus ~91% with global average
    pooling. An adaptive pool to 7x7 (a no-op for 28x28 input) lets other sizes, e.g. 32x32,
    work unchanged.

    Args:
        in_channels: 1 for Fashion-MNIST.
        num_classes: output logits.
        width: channels of the first two convs; the last two use ``2 * width``.
        channels_last: store conv weights in channels-last memory format. On x86 CPUs this
            makes training ~1.5x faster, but the weights become non-contiguous, so code that
            calls ``weight.view(-1)`` must use ``reshape``/``flatten`` instead. Off by default.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        width: int = 32,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1 or width < 1:
            raise ValueError("in_channels, num_classes and width must be >= 1")
        w = width
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, w),
            nn.MaxPool2d(2),
            *_conv_bn_relu(w, w),
            *_conv_bn_relu(w, 2 * w),
            nn.MaxPool2d(2),
            *_conv_bn_relu(2 * w, 2 * w),
            nn.AdaptiveAvgPool2d(7),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * w * 7 * 7, num_classes)
        self.channels_last = channels_last
        self.reset_parameters()
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_out, ReLU) convs as in He et al.; BN starts as identity (:func:`he_init`)."""
        he_init(self, self.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
