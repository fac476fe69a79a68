"""The sparsity report: every pruned layer and the overall figure, from the weights themselves.

It counts actual zeros in the weights rather than trusting the masks, because "final sparsity
is not what I asked for" is the complaint users file most, and the weights are what ships. It
also lists every weight matrix left dense with the reason (an embedding, tied to one, excluded,
not a kind pruned by default), because the second most common complaint is a layer skipped
without a word.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from growprune.sparsity.masks import masked_parameters
from growprune.sparsity.targets import DENSE_BY_DESIGN, DenseMatrix, dense_matrices, find_targets


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
    """Pruned layers (`layers`, which the overall figure covers) and weight matrices left dense.

    `left_dense` lists every weight matrix that is not pruned, once per tensor, with the reason
    (see :class:`~growprune.sparsity.targets.DenseMatrix`). `dense` counts zeros in those of them
    that are dense without being so by design or by request (e.g. LSTM weights by default): the
    ones construction warns about.
    """

    layers: list[LayerSparsity] = field(default_factory=list)
    dense: list[LayerSparsity] = field(default_factory=list)
    left_dense: list[DenseMatrix] = field(default_factory=list)

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
            "left_dense": [{**asdict(d), "numel": d.numel} for d in self.left_dense],
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
        if self.left_dense:
            lines += ["", "| not pruned | shape | numel | reason |", "|---|---|---:|---|"]
            for d in self.left_dense:
                lines.append(f"| {d.name} | {'x'.join(map(str, d.shape))} | {d.numel} | {d.reason} |")
        return "\n".join(lines)

    def __str__(self) -> str:
        width = max([len(layer.name) for layer in [*self.layers, *self.left_dense]] + [10])
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
        if self.left_dense:
            rows += ["", f"{'not pruned':<{width}}  {'shape':>18}  {'numel':>10}  reason"]
        for d in self.left_dense:
            shape = "x".join(map(str, d.shape))
            rows.append(f"{d.name:<{width}}  {shape:>18}  {d.numel:>10}  {d.reason}")
        return "\n".join(rows)


@torch.no_grad()
def sparsity_report(
    model: nn.Module,
    *,
    targets: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
) -> SparsityReport:
    """Zeros per pruned layer of `model`, and every weight matrix left dense with the reason.

    With a sparsifier attached, the layers are its targets; on a plain model, those
    :func:`~growprune.find_targets` picks with `targets` and `exclude` (default: Linear, Conv,
    Conv1D weights and attention projections, not embeddings or weights tied to them). Passing
    the sparsifier's own `targets`/`exclude` makes the reasons precise ("excluded by pattern").
    """
    params = [(name, param) for name, param, _ in masked_parameters(model)]
    if not params:
        params = [(t.name, t.param) for t in find_targets(model, targets, exclude)]
    pruned = {n for n, _ in params}
    by_name = dict(model.named_parameters(remove_duplicate=False))
    taken = {alias for alias, p in by_name.items() for n in pruned if by_name[n] is p}
    left_dense = dense_matrices(model, taken, targets, exclude)
    warned = [(d.name, by_name[d.name]) for d in left_dense if d.kind not in DENSE_BY_DESIGN]

    def rows(pairs: list[tuple[str, torch.Tensor]]) -> list[LayerSparsity]:
        return [LayerSparsity(n, tuple(p.shape), p.numel(), int((p == 0).sum())) for n, p in pairs]

    return SparsityReport(rows(params), rows(warned), left_dense)
