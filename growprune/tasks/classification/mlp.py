"""Multi-layer perceptron: the LeNet-300-100 shape by default.

LeNet-300-100 is the classic dense baseline in the pruning literature, which is why it is the
default; ``hidden`` lets tests build tiny versions of the same family.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """Flatten -> [Linear -> ReLU -> Dropout] * len(hidden) -> Linear.

    Args:
        in_features: size of the flattened input (784 for 28x28 grey images).
        hidden: widths of the hidden layers; empty gives logistic regression.
        num_classes: output logits.
        dropout: dropout probability after each hidden activation (0 disables the layers).
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (300, 100),
        num_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1 or any(h < 1 for h in hidden):
            raise ValueError("in_features, num_classes and hidden widths must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_in, ReLU gain) for hidden layers, zero biases.

        The output layer keeps a smaller, LeCun-like scale (no ReLU follows it), which starts
        the logits near zero and the loss near log(num_classes).
        """
        for m in self.features:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.kaiming_normal_(self.classifier.weight, mode="fan_in", nonlinearity="linear")
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
