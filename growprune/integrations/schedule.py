"""A method name, the user's arguments and the run's length in optimizer steps -> constructor kwargs.

Framework callbacks know the length of the run (``TrainerState.max_steps``,
``Trainer.estimated_stepping_batches``) only once training starts, while users want to write
``SparsityCallback("cgap", sparsity=0.8)`` without counting steps. So every schedule argument
that is a step count may be given as

* an ``int``: optimizer steps, used as is;
* a ``float`` in [0, 1]: a fraction of the run (``finetune_steps=0.25`` = the last quarter);

and the ones left out get defaults derived from the run's length (table in :data:`DEFAULTS`).
Note ``1`` is one step and ``1.0`` is the whole run.

:func:`check_arguments` validates names and value types without the run's length (callbacks call
it at construction, so a typo fails before any training); :func:`schedule_kwargs` resolves the
steps and checks that the schedule fits in the run. Both raise one-line ``ValueError``\\ s that
name the argument and the fix. Pure functions: nothing here touches a model.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from growprune.methods import get_method
from growprune.methods.base import Sparsifier
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

# Arguments that are step counts, per method, with the smallest value each accepts.
STEP_ARGS: dict[str, dict[str, int]] = {
    "dense": {},
    "oneshot": {"prune_step": 0},
    "gmp": {"start_step": 0, "end_step": 0, "frequency": 1},
    "set": {"end_step": 1, "update_interval": 1},
    "rigl": {"end_step": 1, "update_interval": 1},
    "admm": {"pretrain_steps": 0, "admm_steps": 1, "update_interval": 1},
    "cgap": {"steps_per_phase": 1, "finetune_steps": 0},
    "pgap": {"steps_per_phase": 1, "finetune_steps": 0},
}

# What a left-out schedule argument becomes (T = optimizer steps of the run). README table.
DEFAULTS: dict[str, dict[str, str]] = {
    "oneshot": {"prune_step": "0 (prune the starting weights, fine-tune for the whole run)"},
    "gmp": {
        "start_step": "0",
        "end_step": "start_step + 75% of the steps after it (0.75 T from 0)",
        "frequency": "max(1, T // 100)",
    },
    "set": {"end_step": "0.75 T", "update_interval": "max(1, T // 100)"},
    "rigl": {"end_step": "0.75 T", "update_interval": "max(1, T // 100)"},
    "admm": {
        "pretrain_steps": "0",
        "admm_steps": "half of the steps after pretraining (0.5 T from 0)",
        "update_interval": "max(1, admm_steps // 10)",
    },
    "cgap": {
        "partitions": "4",
        "rounds": "1",
        "finetune_steps": "0.25 T, plus what the rounding of steps_per_phase leaves",
        "steps_per_phase": "(T - finetune_steps) // (rounds x partitions)",
    },
    "pgap": {
        "partitions": "4",
        "rounds": "1",
        "finetune_steps": "0.25 T, plus what the rounding of steps_per_phase leaves",
        "steps_per_phase": "(T - finetune_steps) // rounds (the K workers' phases run in parallel)",
    },
}


def _method_class(method: str) -> type[Sparsifier]:
    if not isinstance(method, str):
        raise ValueError(f"method must be a method name such as 'cgap', got {method!r}")
    return get_method(method)


def method_arguments(method: str) -> tuple[str, ...]:
    """Every keyword the method's constructor accepts, minus the ones an integration sets."""
    cls = _method_class(method)
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names:
                names.append(p.name)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break  # this constructor takes nothing further up the chain
    return tuple(n for n in names if n != "self" and n not in RESERVED)


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
    for name, minimum in STEP_ARGS.get(cls.method, {}).items():
        if name in kwargs:
            _check_step_value(method, name, kwargs[name], minimum)
    # Cheap checks of the shared arguments (the constructor repeats them with the model at hand).
    try:
        if "pattern" in kwargs:
            parse_pattern(kwargs["pattern"])
        if kwargs.get("sparsity") is not None:
            validate_sparsity(kwargs["sparsity"])
        if "distribution" in kwargs:
            validate_distribution(kwargs["distribution"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{method}: {error}") from None
    if cls.method in ("cgap", "pgap"):
        _partition_count(method, kwargs.get("partitions", 4))
        rounds = kwargs.get("rounds", 1)
        if not _is_int(rounds) or rounds < 1:
            raise ValueError(f"{method}: rounds must be an integer >= 1, got {rounds!r}")


def _partition_count(method: str, partitions: Any) -> int:
    if _is_int(partitions) and partitions >= 1:
        return int(partitions)
    if isinstance(partitions, (list, tuple)) and partitions:
        return len(partitions)
    raise ValueError(
        f"{method}: partitions must be K >= 1 or a list of name-pattern groups, got {partitions!r}"
    )


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
    :data:`DEFAULTS`, and a schedule that does not fit in the run is refused with the fix.
    Everything else in `kwargs` is passed through unchanged.
    """
    check_arguments(method, kwargs)
    total = _check_total(total_steps)
    name = _method_class(method).method
    out = dict(kwargs)
    minimums = STEP_ARGS.get(name, {})
    for arg, minimum in minimums.items():
        if arg in out:
            out[arg] = _to_steps(out[arg], total, minimum)
    given = {arg for arg in minimums if arg in kwargs}
    resolve = _RESOLVERS.get(name)
    if resolve is not None:
        resolve(method, out, given, total)
    return out


def _to_steps(value: int | float, total: int, minimum: int) -> int:
    if _is_int(value):
        return int(value)
    return max(minimum, round(value * total))


def _beyond(method: str, name: str, value: int, total: int, limit_name: str = "") -> ValueError:
    what = limit_name or f"the run's {total} optimizer steps"
    return ValueError(
        f"{method}: {name}={value} is beyond {what}; lower it (or give it as a fraction of the "
        "run, e.g. 0.5) or train longer"
    )


def _resolve_oneshot(method: str, out: dict[str, Any], given: set[str], total: int) -> None:
    out.setdefault("prune_step", 0)
    if out["prune_step"] > total:
        raise _beyond(method, "prune_step", out["prune_step"], total)


def _resolve_gmp(method: str, out: dict[str, Any], given: set[str], total: int) -> None:
    start = out.setdefault("start_step", 0)
    if start > total:
        raise _beyond(method, "start_step", start, total)
    end = out.setdefault("end_step", start + round(0.75 * (total - start)))
    if end > total:
        raise _beyond(method, "end_step", end, total)
    if end < start:
        raise ValueError(
            f"{method}: end_step={end} is before start_step={start}; the ramp needs end >= start"
        )
    out.setdefault("frequency", max(1, total // 100))


def _resolve_set(method: str, out: dict[str, Any], given: set[str], total: int) -> None:
    end = out.setdefault("end_step", max(1, round(0.75 * total)))
    if end > total:
        raise _beyond(method, "end_step", end, total)
    interval = out.setdefault("update_interval", max(1, total // 100))
    if interval >= end:
        raise ValueError(
            f"{method}: update_interval={interval} >= end_step={end}, so masks would never be updated; "
            "lower update_interval or raise end_step (or train longer)"
        )


def _resolve_admm(method: str, out: dict[str, Any], given: set[str], total: int) -> None:
    pretrain = out.setdefault("pretrain_steps", 0)
    if pretrain >= total:
        raise _beyond(method, "pretrain_steps", pretrain, total, f"the last of the run's {total} steps")
    admm = out.setdefault("admm_steps", max(1, round(0.5 * (total - pretrain))))
    if pretrain + admm > total:
        raise ValueError(
            f"{method}: pretrain_steps + admm_steps = {pretrain} + {admm} = {pretrain + admm} is beyond "
            f"the run's {total} optimizer steps, so the final prune would never happen; shorten them or "
            "train longer"
        )
    out.setdefault("update_interval", max(1, admm // 10))


def _resolve_gap(method: str, out: dict[str, Any], given: set[str], total: int) -> None:
    k = _partition_count(method, out.setdefault("partitions", 4))
    rounds = out.setdefault("rounds", 1)
    if _method_class(method).method == "cgap":
        phases, what = rounds * k, f"{rounds * k} GaP phases ({_plural(rounds, 'round')} x {k} partitions)"
    else:
        phases, what = rounds, f"{_plural(rounds, 'GaP phase')} (the {k} workers train in parallel)"
    if "steps_per_phase" in given:
        gap = phases * out["steps_per_phase"]
        finetune = out["finetune_steps"] if "finetune_steps" in given else 0
        if gap + finetune > total:
            raise ValueError(
                f"{method}: {what} of steps_per_phase={out['steps_per_phase']} plus "
                f"finetune_steps={finetune} need {gap + finetune} optimizer steps but the run has {total}; "
                "lower steps_per_phase, rounds, partitions or finetune_steps, or train longer"
            )
        out.setdefault("finetune_steps", total - gap)
        return
    finetune = out["finetune_steps"] if "finetune_steps" in given else round(0.25 * total)
    if finetune > total:
        raise _beyond(method, "finetune_steps", finetune, total)
    spp = (total - finetune) // phases
    if spp < 1:
        raise ValueError(
            f"{method}: the run's {total} optimizer steps are too few for {what} of at least one step "
            f"plus {finetune} fine-tuning steps; train for at least {phases + finetune} steps, or lower "
            "partitions, rounds or finetune_steps"
        )
    out["steps_per_phase"] = spp
    out["finetune_steps"] = finetune if "finetune_steps" in given else total - phases * spp


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


_RESOLVERS: dict[str, Callable[[str, dict[str, Any], set[str], int], None]] = {
    "oneshot": _resolve_oneshot,
    "gmp": _resolve_gmp,
    "set": _resolve_set,
    "rigl": _resolve_set,
    "admm": _resolve_admm,
    "cgap": _resolve_gap,
    "pgap": _resolve_gap,
}
