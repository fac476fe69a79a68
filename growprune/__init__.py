"""growprune: sparse training with scheduled grow-and-prune (C-GaP, P-GaP) and its baselines."""

from __future__ import annotations

from growprune.export import ExportError, export_model, load
from growprune.inference import accelerate
from growprune.methods import (
    ADMM,
    GMP,
    METHODS,
    SET,
    CGaP,
    Dense,
    MethodSettings,
    OneShot,
    PGaP,
    Phase,
    RigL,
    Sparsifier,
    get_method,
    merge_worker_states,
    register_method,
)
from growprune.report import SparsityReport, sparsity_report
from growprune.sparsity.targets import DenseMatrix, find_targets
from growprune.version import __version__

__all__ = [
    "PGaP",
    "ADMM",
    "CGaP",
    "Dense",
    "DenseMatrix",
    "ExportError",
    "GMP",
    "METHODS",
    "MethodSettings",
    "OneShot",
    "Phase",
    "RigL",
    "SET",
    "Sparsifier",
    "SparsityReport",
    "__version__",
    "accelerate",
    "export_model",
    "find_targets",
    "get_method",
    "merge_worker_states",
    "load",
    "register_method",
    "sparsity_report",
]
