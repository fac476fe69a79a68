"""What ``accelerate`` did to each layer, with the measurements behind each decision."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _speedup(dense_ms: float | None, sparse_ms: float | None) -> float | None:
    """How many times faster the sparse form ran than the dense one; None until both are measured
    (a zero sparse time, too small to time, gives None rather than infinity)."""
    if dense_ms is None or not sparse_ms:
        return None
    return dense_ms / sparse_ms


@dataclass
class LayerDecision:
    """One prunable layer: what it became and why."""

    name: str
    kind: str
    shape: tuple[int, ...]
    sparsity: float
    action: str = "dense"  # "csr", "semi_structured" or "dense"
    dense_ms: float | None = None
    sparse_ms: float | None = None
    candidate: str | None = None  # the fastest sparse form measured, converted or not
    reason: str = ""

    @property
    def speedup(self) -> float | None:
        return _speedup(self.dense_ms, self.sparse_ms)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape), "speedup": self.speedup}


@dataclass
class AccelerationReport:
    """Per-layer decisions plus the end-to-end check on the example input."""

    layers: list[LayerDecision]
    device: str
    threads: int
    input_shape: list[int]
    min_speedup: float
    model_dense_ms: float | None = None
    model_converted_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def converted(self) -> list[LayerDecision]:
        return [layer for layer in self.layers if layer.action != "dense"]

    @property
    def speedup(self) -> float | None:
        return _speedup(self.model_dense_ms, self.model_converted_ms)

    def to_dict(self) -> dict[str, Any]:
        """Every field (read off the dataclass, so a new one cannot be left out of the JSON), the whole
        model's speedup, and the layers last, each with its own."""
        scalars = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "layers"}
        return {**scalars, "speedup": self.speedup, "layers": [layer.to_dict() for layer in self.layers]}

    def _rows(self) -> list[list[str]]:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        rows = []
        for layer in self.layers:
            speed = layer.speedup
            rows.append(
                [
                    layer.name,
                    layer.kind,
                    "x".join(map(str, layer.shape)),
                    f"{layer.sparsity:.3f}",
                    layer.action,
                    ms(layer.dense_ms),
                    ms(layer.sparse_ms),
                    "-" if speed is None else f"{speed:.2f}x",
                    layer.reason,
                ]
            )
        return rows

    _HEADER = ["layer", "type", "shape", "sparsity", "action", "dense ms", "sparse ms", "speed-up", "reason"]

    def summary(self) -> str:
        line = (
            f"{len(self.converted)}/{len(self.layers)} layers converted on {self.device} "
            f"({self.threads} threads, input {'x'.join(map(str, self.input_shape))})"
        )
        if self.speedup is not None:
            line += (
                f"; whole model {self.model_dense_ms:.3f} ms dense -> {self.model_converted_ms:.3f} ms "
                f"converted ({self.speedup:.2f}x)"
            )
        return line

    def __str__(self) -> str:
        rows = [self._HEADER, *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._HEADER) - 1)]
        lines = [
            "  ".join(
                cell.ljust(w) if i < 2 or i == 4 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(r, widths))
            )
            + "  "
            + r[-1]
            for r in rows
        ]
        return "\n".join([self.summary(), *lines, *self.notes])

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self._HEADER) + " |", "|" + "---|" * len(self._HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in self._rows()]
        return "\n".join([self.summary(), "", *lines, *(f"\n{n}" for n in self.notes)])
