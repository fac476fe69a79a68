"""Sparse-training methods, one short subclass of :class:`Sparsifier` each, and their registry."""

from __future__ import annotations

from growprune.methods.admm import ADMM
from growprune.methods.base import Phase, Sparsifier
from growprune.methods.cgap import CGaP
from growprune.methods.dense import Dense
from growprune.methods.gmp import GMP
from growprune.methods.oneshot import OneShot
from growprune.methods.pgap import PGaP, merge_worker_states
from growprune.methods.rigl import RigL
from growprune.methods.set import SET

METHODS: dict[str, type[Sparsifier]] = {
    cls.method: cls for cls in (Dense, OneShot, GMP, SET, RigL, ADMM, CGaP, PGaP)
}


def register_method(cls: type[Sparsifier]) -> type[Sparsifier]:
    """Make a method available by its `method` name (recipes, CLI). Usable as a decorator."""
    METHODS[cls.method] = cls
    return cls


def get_method(name: str) -> type[Sparsifier]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method '{name}'; choose one of {', '.join(sorted(METHODS))}") from None


__all__ = [
    "PGaP",
    "merge_worker_states",
    "ADMM",
    "CGaP",
    "Dense",
    "GMP",
    "METHODS",
    "OneShot",
    "Phase",
    "RigL",
    "SET",
    "Sparsifier",
    "get_method",
    "register_method",
]
