"""``torchvision.models`` stand-in: only the ``resnet`` module, for rigl-torch's isinstance checks."""

from . import resnet

__all__ = ["resnet"]
