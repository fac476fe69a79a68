"""The two block classes rigl-torch tests with ``isinstance``; never instantiated by growprune."""

from torch import nn


class BasicBlock(nn.Module):
    """Placeholder for ``torchvision.models.resnet.BasicBlock``."""


class Bottleneck(nn.Module):
    """Placeholder for ``torchvision.models.resnet.Bottleneck``."""
