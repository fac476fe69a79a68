"""Sparse inference: run pruned layers with sparse kernels where that is measurably faster."""

from growprune.inference.accelerate import accelerate, relative_error
from growprune.inference.modules import (
    SemiStructuredLinear,
    SparseLinear,
    is_n_m,
    semi_structured_unsupported,
)
from growprune.inference.report import AccelerationReport, LayerDecision
from growprune.inference.timing import Timing, Variant, measure

__all__ = [
    "AccelerationReport",
    "LayerDecision",
    "SemiStructuredLinear",
    "SparseLinear",
    "Timing",
    "Variant",
    "accelerate",
    "is_n_m",
    "measure",
    "relative_error",
    "semi_structured_unsupported",
]
