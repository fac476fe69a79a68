"""The sparsity report: every pruned layer and the overall figure, from the weights themselves.

It counts actual zeros in the weights rather than trusting the masks, because "final sparsity
is not what I asked for" is the complaint users file most, and the weights are what ships.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from growprune.sparsity.masks import masked_parameters
from growprune.sparsity.targets import find_targets, untargeted_matrices


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    shape: tuple[int, ...]
    numel: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0


@dataclass
class SparsityReport:
    """Pruned layers (`layers`, which the overall figure covers) and weight matrices left dense
    (`dense`: not targeted, e.g. embeddings excluded by design or LSTM weights by default)."""

    layers: list[LayerSparsity] = field(default_factory=list)
    dense: list[LayerSparsity] = field(default_factory=list)

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def overall(self) -> float:
        return self.zeros / self.numel if self.numel else 0.0

    def to_dict(self) -> dict:
        return {
            "layers": [{**asdict(layer), "sparsity": layer.sparsity} for layer in self.layers],
            "not_pruned": [{**asdict(layer), "sparsity": layer.sparsity} for layer in self.dense],
            "numel": self.numel,
            "zeros": self.zeros,
            "overall": self.overall,
        }

    def to_markdown(self) -> str:
        lines = ["| layer | shape | numel | zeros | sparsity |", "|---|---|---:|---:|---:|"]
        for layer in self.layers:
            shape = "x".join(map(str, layer.shape))
            lines.append(f"| {layer.name} | {shape} | {layer.numel} | {layer.zeros} | {layer.sparsity:.4f} |")
        lines.append(f"| **overall** | | {self.numel} | {self.zeros} | {self.overall:.4f} |")
        for layer in self.dense:
            shape = "x".join(map(str, layer.shape))
            lines.append(
                f"| {layer.name} (not pruned) | {shape} | {layer.numel} | {layer.zeros} | "
                f"{layer.sparsity:.4f} |"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        width = max([len(layer.name) for layer in [*self.layers, *self.dense]] + [7])
        rows = [f"{'layer':<{width}}  {'shape':>18}  {'numel':>10}  {'zeros':>10}  sparsity"]
        for layer in self.layers:
            shape = "x".join(map(str, layer.shape))
            rows.append(
                f"{layer.name:<{width}}  {shape:>18}  {layer.numel:>10}  {layer.zeros:>10}  "
                f"{layer.sparsity:8.4f}"
            )
        rows.append(
            f"{'overall':<{width}}  {'':>18}  {self.numel:>10}  {self.zeros:>10}  {self.overall:8.4f}"
        )
        for layer in self.dense:
            shape = "x".join(map(str, layer.shape))
            rows.append(
                f"{layer.name:<{width}}  {shape:>18}  {layer.numel:>10}  {layer.zeros:>10}  not pruned"
            )
        return "\n".join(rows)


@torch.no_grad()
def sparsity_report(model: nn.Module) -> SparsityReport:
    """Zeros per pruned layer of `model`.

    With a sparsifier attached, the layers are its targets; on a plain model, the default
    targets (Linear/Conv weights and attention projections).
    """
    params = [(name, param) for name, param, _ in masked_parameters(model)]
    if not params:
        params = [(t.name, t.param) for t in find_targets(model)]
    pruned = {n for n, _ in params}
    by_name = dict(model.named_parameters(remove_duplicate=False))
    taken = {alias for alias, p in by_name.items() for n in pruned if by_name[n] is p}
    dense = [(n, by_name[n]) for n in untargeted_matrices(model, taken)]

    def rows(pairs: list[tuple[str, torch.Tensor]]) -> list[LayerSparsity]:
        return [LayerSparsity(n, tuple(p.shape), p.numel(), int((p == 0).sum())) for n, p in pairs]

    return SparsityReport(rows(params), rows(dense))
