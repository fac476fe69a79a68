"""Small models covering every kind of prunable layer the core must handle, plus seeded batches.

Each entry builds a model whose prunable parameters exercise one special case: plain Linear,
Conv2d next to BatchNorm, MultiheadAttention's raw ``in_proj_weight`` next to ``out_proj``,
Conv1d with a depthwise (``groups=C``) kernel of shape (C, 1, k), and parameters reachable under
two names (an embedding tied to the output layer, two Linear modules sharing one weight).
Models are tiny so that the method x model x optimizer grid stays fast on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

NUM_CLASSES = 10


class MLP(nn.Module):
    def __init__(self, dims: Sequence[int] = (20, 48, 32, NUM_CLASSES)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BNConvNet(nn.Module):
    """Conv2d + BatchNorm2d blocks: BN parameters and running stats must stay untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 12, 3, padding=1, bias=False),
            nn.BatchNorm2d(12),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(12, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class TinyTransformer(nn.Module):
    """nn.TransformerEncoder (batch_first): in_proj_weight is a raw Parameter, out_proj a Linear."""

    def __init__(self, d_in: int = 12, d_model: int = 16, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(d_in, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


class Conv1dNet(nn.Module):
    """Conv1d, a depthwise Conv1d (weight C x 1 x k) and a pointwise Conv1d."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, channels, 3, padding=1)
        self.depthwise = nn.Conv1d(channels, channels, 3, padding=1, groups=channels)
        self.pointwise = nn.Conv1d(channels, 16, 1)
        self.head = nn.Linear(16, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        x = torch.relu(self.pointwise(torch.relu(self.depthwise(x))))
        return self.head(x.mean(dim=2))


class TiedNet(nn.Module):
    """An embedding tied to the output Linear, and two Linear modules sharing one Parameter."""

    vocab = NUM_CLASSES * 2

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(self.vocab, dim)
        self.mix_a = nn.Linear(dim, dim)
        self.proj1 = nn.Linear(dim, dim)
        self.mix_b = nn.Linear(dim, dim)
        self.mix_b.weight = self.mix_a.weight  # same Parameter under two names
        self.proj2 = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, self.vocab, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.emb(tokens).mean(dim=1)
        h = torch.tanh(self.mix_a(h))
        h = torch.tanh(self.proj1(h))
        h = torch.tanh(self.mix_b(h))
        h = torch.tanh(self.proj2(h))
        return self.out(h)


# Targets of TiedNet are requested through the *second* alias of each tied pair: the library must
# resolve them to the one shared Parameter (canonical name = first registration).
TIED_TARGETS = ["out.weight", "mix_b.weight", "proj1.weight", "proj2.weight"]


@dataclass(frozen=True)
class ModelCase:
    name: str
    build: Callable[[], nn.Module]
    batch: Callable[[torch.Generator, int], tuple[torch.Tensor, torch.Tensor]]
    num_classes: int = NUM_CLASSES
    kwargs: dict = field(default_factory=dict)  # extra sparsifier arguments (targets=...)


def _labels(gen: torch.Generator, n: int, classes: int = NUM_CLASSES) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=gen)


CASES: dict[str, ModelCase] = {
    "mlp": ModelCase("mlp", MLP, lambda g, n: (torch.randn(n, 20, generator=g), _labels(g, n))),
    "cnn_bn": ModelCase(
        "cnn_bn", BNConvNet, lambda g, n: (torch.randn(n, 3, 8, 8, generator=g), _labels(g, n))
    ),
    "transformer": ModelCase(
        "transformer", TinyTransformer, lambda g, n: (torch.randn(n, 5, 12, generator=g), _labels(g, n))
    ),
    "conv1d_depthwise": ModelCase(
        "conv1d_depthwise", Conv1dNet, lambda g, n: (torch.randn(n, 4, 16, generator=g), _labels(g, n))
    ),
    "tied": ModelCase(
        "tied",
        TiedNet,
        lambda g, n: (
            torch.randint(0, TiedNet.vocab, (n, 6), generator=g),
            _labels(g, n, TiedNet.vocab),
        ),
        num_classes=TiedNet.vocab,
        kwargs={"targets": TIED_TARGETS},
    ),
}


def build(case: str, seed: int = 0) -> nn.Module:
    """The model of `case` with weights fixed by `seed`."""
    torch.manual_seed(seed)
    return CASES[case].build()


def batches(
    case: str, steps: int, batch_size: int = 16, seed: int = 1234
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`steps` seeded batches, precomputed so that resumed runs see exactly the same data."""
    gen = torch.Generator().manual_seed(seed)
    return [CASES[case].batch(gen, batch_size) for _ in range(steps)]
