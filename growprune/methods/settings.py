"""What a method declares about itself for recipes: its keys (in epochs) and how they become steps.

A recipe states a schedule in epochs, because that is how papers state them; a sparsifier counts
optimizer steps, because that is what it sees. Each method class names a :class:`MethodSettings`
dataclass with its own recipe keys and converts them in ``Sparsifier.arguments_from`` with a
:class:`RunLength`, so everything about a method lives in its own file: a method registered
with ``growprune.register_method`` is accepted by recipes, the CLI, reports and benchmarks
without editing any of them.

Plain dataclasses, not pydantic models: ``import growprune`` must not need the training extras.
The recipe layer turns them into validating models; a field's ``metadata`` holds its bounds
(``ge``, ``gt``, ``le``, ``lt``) and ``description`` in pydantic's words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def bounded(default: Any = ..., *, description: str = "", **bounds: float) -> Any:
    """A settings field with numeric bounds (``ge=0``, ``gt=0``, ``le=1``, ``lt=1``)."""
    metadata = {**bounds, **({"description": description} if description else {})}
    if default is ...:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(kw_only=True)
class MethodSettings:
    """Recipe keys of a method beyond the shared ones (sparsity, distribution, pattern, targets, exclude).

    The base has none: a method whose schedule needs no settings can use it as it is.
    """


def epochs_to_steps(epochs: float, steps_per_epoch: int, minimum: int = 0) -> int:
    """The one rounding rule from epochs to optimizer steps (schedules and the run agree on it)."""
    return max(minimum, round(epochs * steps_per_epoch))


@dataclass(frozen=True)
class RunLength:
    """The run as a method needs it to turn epochs into steps.

    ``total_steps`` is the run's length when the recipe sets it (``training.epochs``); None when
    the method's own schedule decides it (GaP).
    """

    steps_per_epoch: int
    total_steps: int | None = None

    def steps(self, epochs: float, minimum: int = 0) -> int:
        return epochs_to_steps(epochs, self.steps_per_epoch, minimum)

    def fraction(self, share: float, minimum: int = 0) -> int:
        """``share`` of the run's length in steps (for defaults such as "75% of training")."""
        if self.total_steps is None:
            raise ValueError("this method's default needs the run's length: set training.epochs")
        return max(minimum, round(share * self.total_steps))


class ScheduleFitError(ValueError):
    """A schedule that does not fit in the run (``fit_to_run``): what is wrong (`fact`) and how to
    fix it (`fix`) apart, so a caller that states its own fix (the engine: shorten the method's
    epochs or raise training.epochs) takes the fact without parsing the message."""

    def __init__(self, fact: str, fix: str) -> None:
        super().__init__(f"{fact}; {fix}")
        self.fact, self.fix = fact, fix


def beyond_run(method: str, name: str, value: int, total: int, limit_name: str = "") -> ScheduleFitError:
    """The error for a schedule argument that does not fit in a run of `total` optimizer steps."""
    what = limit_name or f"the run's {total} optimizer steps"
    return ScheduleFitError(
        f"{method}: {name}={value} is beyond {what}",
        "lower it (or give it as a fraction of the run, e.g. 0.5) or train longer",
    )


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
