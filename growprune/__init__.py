"""growprune: sparse training with scheduled grow-and-prune (C-GaP, P-GaP) and its baselines.

The public names below are imported on first use (PEP 562), so that ``import growprune`` and the
``growprune`` command start without importing torch: the command's error boundary is in place
before the slow imports run, and ``growprune --help`` answers at once.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from growprune.version import __version__

# Public name -> the module that defines it.
_EXPORTS = {
    "ExportError": "growprune.export",
    "export_model": "growprune.export",
    "load": "growprune.export",
    "accelerate": "growprune.inference",
    **dict.fromkeys(
        (
            "ADMM",
            "GMP",
            "METHODS",
            "SET",
            "CGaP",
            "Dense",
            "MethodSettings",
            "OneShot",
            "PGaP",
            "Phase",
            "RigL",
            "RoundsMethod",
            "Sparsifier",
            "get_method",
            "merge_worker_states",
            "register_method",
        ),
        "growprune.methods",
    ),
    "SparsityReport": "growprune.report",
    "sparsity_report": "growprune.report",
    "DenseMatrix": "growprune.sparsity.targets",
    "find_targets": "growprune.sparsity.targets",
}

__all__ = [
    "ADMM",
    "CGaP",
    "Dense",
    "DenseMatrix",
    "ExportError",
    "GMP",
    "METHODS",
    "MethodSettings",
    "OneShot",
    "PGaP",
    "Phase",
    "RigL",
    "RoundsMethod",
    "SET",
    "Sparsifier",
    "SparsityReport",
    "__version__",
    "accelerate",
    "export_model",
    "find_targets",
    "get_method",
    "load",
    "merge_worker_states",
    "register_method",
    "sparsity_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module 'growprune' has no attribute {name!r}")
        return importlib.import_module(f"{__name__}.{name}")  # a subpackage: gp.methods, gp.export
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what type checkers and IDEs see
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
        RoundsMethod,
        Sparsifier,
        get_method,
        merge_worker_states,
        register_method,
    )
    from growprune.report import SparsityReport, sparsity_report
    from growprune.sparsity.targets import DenseMatrix, find_targets
