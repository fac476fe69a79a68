"""Dense training with the same bookkeeping as the sparse methods, for equal-footing baselines."""

from __future__ import annotations

from growprune.methods.base import Phase, Sparsifier


class Dense(Sparsifier):
    """Never prunes. Targets still get (all-kept) masks so reports list the same layers."""

    method = "dense"
    title = "dense"

    def __init__(self, model, optimizer, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("sparsity", 0.0)
        super().__init__(model, optimizer, **kwargs)

    def describe_phase(self, step: int) -> Phase:
        return Phase("dense", step)

    @property
    def done(self) -> bool:
        return True
