"""Sparse-training methods, one short subclass of :class:`Sparsifier` each, and their registry."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import is_dataclass
from typing import Any

from growprune.methods.admm import ADMM
from growprune.methods.base import Phase, Sparsifier
from growprune.methods.cgap import CGaP
from growprune.methods.dense import Dense
from growprune.methods.gmp import GMP
from growprune.methods.oneshot import OneShot
from growprune.methods.pgap import PGaP
from growprune.methods.rigl import RigL
from growprune.methods.rounds import RoundsMethod, merge_worker_states
from growprune.methods.set import SET
from growprune.methods.settings import MethodSettings

METHODS: dict[str, type[Sparsifier]] = {
    cls.method: cls for cls in (Dense, OneShot, GMP, SET, RigL, ADMM, CGaP, PGaP)
}


def register_method(cls: type[Sparsifier]) -> type[Sparsifier]:
    """Make a method available by its `method` name: in recipes, the CLI, reports and benchmarks.

    The one call a third-party method needs (usable as a decorator). The class declares the
    rest itself: ``method`` (the recipe name), ``title``, its step-counting arguments as
    :class:`~growprune.methods.settings.StepArgument` class attributes (recipe keys, callback
    defaults and ``config()`` follow from them) and ``settings`` (its other recipe keys, a
    :class:`~growprune.methods.settings.MethodSettings` dataclass). Registering another class under
    a name already taken is refused; registering the same class again is harmless.
    """
    if not (isinstance(cls, type) and issubclass(cls, Sparsifier)):
        raise TypeError(f"register_method takes a Sparsifier subclass, got {cls!r}")
    name = cls.method
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][\w.-]*", name) or name == Sparsifier.method:
        raise ValueError(f"{cls.__name__}.method must be a name such as 'mymethod' (a recipe's method.name)")
    if not (
        isinstance(cls.settings, type)
        and is_dataclass(cls.settings)
        and issubclass(cls.settings, MethodSettings)
    ):
        raise TypeError(
            f"{cls.__name__}.settings must be a dataclass subclassing growprune.methods.MethodSettings"
        )
    taken = METHODS.get(name)
    if taken is not None and taken is not cls:
        raise ValueError(
            f"method name '{name}' is taken by {taken.__module__}.{taken.__qualname__}; choose another"
        )
    METHODS[name] = cls
    return cls


PLUGINS_ENV = "GROWPRUNE_PLUGINS"
ENTRY_POINT_GROUP = "growprune.plugins"


def load_plugins() -> list[str]:
    """Import the modules that register third-party methods (or models), for the CLI.

    Modules come from the ``growprune.plugins`` entry-point group of installed packages and from
    ``GROWPRUNE_PLUGINS`` (comma-separated module names); each registers what it defines when
    imported. Returns the modules loaded. A module that cannot be imported is an error naming it:
    a recipe that names its method would fail later with a less helpful message.
    """
    import importlib
    import os
    from importlib.metadata import entry_points

    names = [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]
    names += [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - any failure of a plugin is reported the same way
            raise ImportError(
                f"growprune plugin '{name}' (from {PLUGINS_ENV} or the {ENTRY_POINT_GROUP} entry points) "
                f"failed to import: {type(err).__name__}: {err}"
            ) from None
    return names


def get_method(name: str) -> type[Sparsifier]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method '{name}'; choose one of {', '.join(sorted(METHODS))}") from None


__all__ = [
    "PGaP",
    "RoundsMethod",
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
    "schedule_epochs_of",
    "MethodSettings",
    "load_plugins",
    "register_method",
]


def schedule_epochs_of(section: Mapping[str, Any]) -> float | None:
    """The epochs a recipe's method section lasts by its own schedule (C-GaP and P-GaP: their
    phases and fine-tuning), or None for a method whose run length is ``training.epochs``: what a
    caller building recipes asks instead of listing methods by name. Keys of the section that are
    not the method's own (``name``, ``sparsity``, ``targets``, ...) are left out."""
    cls = get_method(str(section["name"]))
    own = {f.name for f in dataclasses.fields(cls.settings)}
    return cls.schedule_epochs(cls.settings(**{k: v for k, v in section.items() if k in own}))
