"""Checking a builder's keyword arguments up front, so a typo in a recipe names the bad key."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["check_kwargs"]


def check_kwargs(kind: str, name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(fn).parameters
    allowed = [
        p
        for p, v in params.items()
        if v.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown argument(s) {', '.join(unknown)} for {kind} {name!r}; accepted: {', '.join(allowed)}"
        )
