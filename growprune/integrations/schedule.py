"""A method name, the user's arguments and the run's length in optimizer steps -> constructor kwargs.

Framework callbacks know the length of the run (``TrainerState.max_steps``,
``Trainer.estimated_stepping_batches``) only once training starts, while users want to write
``SparsityCallback("cgap", sparsity=0.8)`` without counting steps. So every schedule argument
that is a step count may be given as

* an ``int``: optimizer steps, used as is;
* a ``float`` in [0, 1]: a fraction of the run (``finetune_steps=0.25`` = the last quarter);

and the ones left out get defaults derived from the run's length (each method's
``StepArgument`` declarations, collected by :func:`defaults_table`). Which arguments count steps,
and how a method fits its schedule into the run, is declared by the method class itself
(``step_arguments``, ``fit_to_run``), so a method registered by a third party works here too.
Note ``1`` is one step and ``1.0`` is the whole run.

:func:`check_arguments` validates names and value types without the run's length (callbacks call
it at construction, so a typo fails before any training); :func:`schedule_kwargs` resolves the
steps and checks that the schedule fits in the run. Both raise one-line ``ValueError``\\ s that
name the argument and the fix. Pure functions: nothing here touches a model.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping
from typing import Any

from growprune.methods import METHODS, get_method
from growprune.methods.base import STORAGES, Sparsifier, check_choice, constructor_arguments
from growprune.seeding import check_seed
from growprune.sparsity.distribution import validate_distribution, validate_sparsity
from growprune.sparsity.patterns import parse_pattern

# Constructor arguments an integration sets itself; users must not pass them.
RESERVED = {
    "model": "the callback passes the framework's model",
    "optimizer": "the callback passes the framework's optimizer",
    "state": "the callback restores the sparsifier from the framework's checkpoints itself",
    "persistent_masks": "the callback keeps masks out of the model's state_dict so checkpoints "
    "load into fresh models; the masks travel in the sparsifier state",
}


def defaults_table() -> dict[str, dict[str, str]]:
    """What a left-out schedule argument becomes, per registered method (T = the run's steps)."""
    return {
        name: {arg.name: arg.shown() for arg in cls.step_arguments}
        for name, cls in sorted(METHODS.items())
        if cls.step_arguments
    }


def defaults_rows() -> list[str]:
    """The docs' defaults table (docs/integrations.md), one markdown row per method; methods whose
    rows are equal (RigL is SET with another growth) share one."""
    rows: dict[tuple[str, str], list[str]] = {}
    for name, cls in METHODS.items():  # registry order: the baselines first, as the docs list them
        if cls.step_arguments:
            args = " / ".join(f"`{arg.name}`" for arg in cls.step_arguments)
            rows.setdefault((args, " / ".join(arg.shown() for arg in cls.step_arguments)), []).append(name)
    return [f"| {', '.join(names)} | {args} | {shown} |" for (args, shown), names in rows.items()]


def _method_class(method: str) -> type[Sparsifier]:
    if not isinstance(method, str):
        raise ValueError(f"method must be a method name such as 'cgap', got {method!r}")
    return get_method(method)


def method_arguments(method: str) -> tuple[str, ...]:
    """Every keyword the method's constructor accepts, minus the ones an integration sets."""
    return tuple(n for n in constructor_arguments(_method_class(method)) if n not in RESERVED)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_step_value(method: str, name: str, value: Any, minimum: int) -> None:
    if _is_int(value):
        if value < minimum:
            raise ValueError(f"{method}: {name} must be >= {minimum} optimizer steps, got {value}")
        return
    if isinstance(value, float):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            hint = f" (pass {int(value)} for {int(value)} steps)" if value > 1 and value.is_integer() else ""
            raise ValueError(
                f"{method}: {name}={value!r} is neither a step count (int) nor a fraction of the "
                f"run in [0, 1] (float){hint}"
            )
        return
    raise ValueError(
        f"{method}: {name} must be an int (optimizer steps) or a float in [0, 1] (fraction of the "
        f"run), got {value!r}"
    )


def check_arguments(method: str, kwargs: Mapping[str, Any]) -> None:
    """Refuse an unknown method, an unknown argument or a malformed value, before any training."""
    cls = _method_class(method)
    allowed = method_arguments(method)
    for name in kwargs:
        if name in RESERVED:
            raise ValueError(f"{method}: do not pass '{name}': {RESERVED[name]}")
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(
                f"unknown argument '{name}' for method '{method}'; {hint}(allowed: {', '.join(allowed)})"
            )
    for arg in cls.step_arguments:
        if arg.name in kwargs:
            _check_step_value(method, arg.name, kwargs[arg.name], arg.minimum)
    if "seed" in kwargs:
        check_seed(kwargs["seed"])  # SeedError: a float (2.0 too) or a bool is not a seed
    # Cheap checks of the shared arguments (the constructor repeats them with the model at hand).
    try:
        if "pattern" in kwargs:
            parse_pattern(kwargs["pattern"])
        if kwargs.get("sparsity") is not None:
            validate_sparsity(kwargs["sparsity"])
        if "distribution" in kwargs:
            validate_distribution(kwargs["distribution"])
        if "storage" in kwargs:
            check_choice("storage", kwargs["storage"], STORAGES)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{method}: {error}") from None
    cls.check_schedule_arguments(kwargs)


def _check_total(total_steps: Any) -> int:
    if isinstance(total_steps, float) and total_steps.is_integer():
        total_steps = int(total_steps)
    if not _is_int(total_steps) or total_steps < 1:
        raise ValueError(
            f"the run's length must be a whole number of optimizer steps >= 1, got {total_steps!r}: "
            "set the trainer's max_steps or a finite number of epochs"
        )
    return int(total_steps)


def schedule_kwargs(method: str, kwargs: Mapping[str, Any], total_steps: int) -> dict[str, Any]:
    """Constructor kwargs for `method` in a run of `total_steps` optimizer steps.

    Step arguments given as fractions become steps, left-out ones get the defaults of
    :func:`defaults_table`, and a schedule that does not fit in the run is refused with the fix.
    Everything else in `kwargs` is passed through unchanged.
    """
    check_arguments(method, kwargs)
    total = _check_total(total_steps)
    cls = _method_class(method)
    out = dict(kwargs)
    for arg in cls.step_arguments:
        if arg.name in out:
            out[arg.name] = _to_steps(out[arg.name], total, arg.minimum)
    cls.fit_to_run(out, {arg.name for arg in cls.step_arguments if arg.name in kwargs}, total)
    return out


def _to_steps(value: int | float, total: int, minimum: int) -> int:
    if _is_int(value):
        return int(value)
    return max(minimum, round(value * total))
