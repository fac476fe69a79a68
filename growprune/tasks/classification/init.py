"""The weight initialization the classification convnets share (He et al., 2015 and 2016)."""

from __future__ import annotations

from torch import nn

__all__ = ["he_init"]


def he_init(model: nn.Module, classifier: nn.Linear | None = None) -> None:
    """Kaiming-normal convolutions (fan_out, ReLU gain) and identity BatchNorms (scale 1, shift 0).

    Modules are visited in ``model.modules()`` order, so a seeded build draws the same weights
    whichever model calls it. ``classifier``, where given, is re-drawn last with fan_in and a
    linear gain (no ReLU follows it, so the logits start near zero and the loss near
    log(num_classes)) and a zero bias; without one the output layer keeps PyTorch's default, as
    torchvision's ResNets do.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if classifier is not None:
        nn.init.kaiming_normal_(classifier.weight, mode="fan_in", nonlinearity="linear")
        nn.init.zeros_(classifier.bias)
