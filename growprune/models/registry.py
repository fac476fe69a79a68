"""Models by name, so configs and the CLI can say ``model: resnet20``.

Keyword arguments are checked against the constructor's signature before building, so a typo
in a config names the bad key (and lists the good ones) instead of failing deep inside.
:func:`register_model` adds a model of your own: recipes can then name it, and
``growprune.load`` can rebuild an exported file that records it.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable
from typing import Any

from torch import nn

from growprune.tasks.registry import task_models

__all__ = ["build_model", "list_models", "model_builder", "register_model"]

# Models registered by users (register_model); the built-in ones are declared by their tasks
# (TaskSpec.models) and imported only when built. A registered name shadows a built-in one.
_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Make ``builder`` (a class or function returning an ``nn.Module``) buildable as ``name``.

    Afterwards ``build_model(name, **kwargs)`` calls ``builder(**kwargs)``, a recipe's
    ``model.name`` may be ``name``, and an export that records ``name`` can be loaded with
    ``growprune.load(path)`` in any process that registered it first. Registering a name again
    replaces its builder. Returns ``builder``.

    Raises:
        ValueError: ``name`` is empty or ``builder`` is not callable.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if not callable(builder):
        raise ValueError(f"builder for model {name!r} must be callable, got {type(builder).__name__}")
    _BUILDERS[name] = builder
    return builder


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(set(_BUILDERS) | set(task_models()))


def model_builder(name: str) -> Callable[..., nn.Module]:
    """The constructor behind ``name``, e.g. to read which arguments it accepts."""
    if name in _BUILDERS:
        return _BUILDERS[name]
    built_in = task_models().get(name)
    if built_in is None:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(list_models())}")
    return built_in()


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with constructor keyword arguments ``kwargs``.

    Raises:
        ValueError: unknown ``name`` (the message lists the allowed names), or an invalid
            value that the constructor rejects.
        TypeError: a keyword the constructor does not take (the message names it).
    """
    builder = model_builder(name)
    params = inspect.signature(builder).parameters
    allowed = [p for p, v in params.items() if v.kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown argument(s) {', '.join(unknown)} for model {name!r}; accepted: {', '.join(allowed)}"
        )
    check_model_args(builder, kwargs)
    return builder(**kwargs)


# Largest magnitude a number given to a model constructor may have: sizes beyond it cannot be
# allocated, and torch fails on them deep inside (an overflow, or a comparison with text).
MAX_ARGUMENT = 2**31 - 1


def _hints(builder: Callable[..., Any]) -> dict[str, Any]:
    """The constructor's parameter annotations, resolved (modules use ``from __future__ import
    annotations``); empty where they cannot be resolved."""
    target = builder.__init__ if inspect.isclass(builder) else builder  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation naming something not importable: no checks, as before
        return {}


def _problem(value: Any, annotation: Any) -> str | None:
    """Why ``value`` does not have the type ``annotation`` describes (None: it does, or the
    annotation is one this check does not understand)."""
    origin = typing.get_origin(annotation)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return None
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        problems = [_problem(value, option) for option in options]
        return None if any(p is None for p in problems) else next(p for p in problems if p)
    if annotation is type(None):
        return None if value is None else "not null"
    if annotation is bool:
        return None if isinstance(value, bool) else "not true or false"
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return "not a whole number"
        return None if abs(value) <= MAX_ARGUMENT else f"out of range (at most {MAX_ARGUMENT})"
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return "not a number"
        if not math.isfinite(value):
            return "not a finite number"
        return None if abs(value) <= MAX_ARGUMENT else f"out of range (at most {MAX_ARGUMENT})"
    if annotation is str:
        return None if isinstance(value, str) else "not text"
    sequences = (collections.abc.Sequence, list, tuple, collections.abc.Iterable)
    if origin in sequences:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            return "not a list"
        args = typing.get_args(annotation)
        item = args[0] if args and (origin is not tuple or len(args) == 2 and args[1] is Ellipsis) else None
        if item is None:
            return None
        for index, element in enumerate(value):
            problem = _problem(element, item)
            if problem is not None:
                return f"a list whose item {index} ({element!r}) is {problem}"
        return None
    return None


def check_model_args(builder: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Refuse arguments whose values do not fit the builder's annotations (``width: inf`` where
    an int is expected, text where a number is): ValueError naming the argument."""
    hints = _hints(builder)
    for key, value in kwargs.items():
        if key in hints:
            problem = _problem(value, hints[key])
            if problem is not None:
                raise ValueError(f"{key} is {value!r}, {problem}")
