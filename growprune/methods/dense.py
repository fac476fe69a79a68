"""Dense training with the same bookkeeping as the sparse methods, for equal-footing baselines."""

from __future__ import annotations

from dataclasses import dataclass

from growprune.methods.base import Phase, Sparsifier
from growprune.methods.settings import MethodSettings
from growprune.records import PhaseName


@dataclass(kw_only=True)
class DenseSettings(MethodSettings):
    sparsity: float = 0.0


class Dense(Sparsifier):
    """Never prunes. Targets still get (all-kept) masks so reports list the same layers."""

    method = "dense"
    title = "dense"
    settings = DenseSettings

    def __init__(self, model, optimizer, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("sparsity", 0.0)
        super().__init__(model, optimizer, **kwargs)

    def describe_phase(self, step: int) -> Phase:
        return Phase(PhaseName.DENSE, step)

    @property
    def done(self) -> bool:
        return True
