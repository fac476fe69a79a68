"""What a method declares about itself: its step-space arguments, its recipe keys, and how they meet.

A recipe states a schedule in epochs, because that is how papers state them; a framework callback
knows only the run's length T in optimizer steps; a sparsifier counts optimizer steps, because
that is what it sees. A method declares each argument that counts steps once, as a
:class:`StepArgument` class attribute (its default as a function of the run, its least value,
its recipe key in epochs), and the base class derives from that one declaration the constructor
check, ``config()``, the defaults the callbacks fill from T (``fit_to_run``), the recipe key and
its conversion to steps (``arguments_from``, with a :class:`RunLength`) and the defaults table
of the docs. Its other recipe keys are a :class:`MethodSettings` dataclass. So everything about a
method lives in its own file: a method registered with ``growprune.register_method`` is accepted
by recipes, the CLI, reports and benchmarks without editing any of them.

Plain dataclasses, not pydantic models: ``import growprune`` must not need the training extras.
The recipe layer turns them into validating models; a field's ``metadata`` holds its bounds
(``ge``, ``gt``, ``le``, ``lt``) and ``description`` in pydantic's words.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from growprune.seeding import is_bool


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


class Default:
    """How a step argument left out follows from the run: its value in a run of `total` optimizer
    steps, given the arguments declared before it (`known`, in steps), and the same in words for
    the docs' defaults table (``str``). One object answers both, so they cannot disagree."""

    def steps(self, total: int, known: Mapping[str, int]) -> int:
        raise NotImplementedError

    def in_recipe(self) -> float | None:
        """The recipe key's default in epochs when it does not depend on the run, else None."""
        return None


@dataclass(frozen=True)
class Fixed(Default):
    """The same number of steps in every run (0: the run's start)."""

    value: int = 0

    def steps(self, total: int, known: Mapping[str, int]) -> int:
        del total, known
        return self.value

    def in_recipe(self) -> float | None:
        # 0 steps is 0 epochs whatever the loader's length; another count has no epoch equivalent
        return 0.0 if self.value == 0 else None

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Share(Default):
    """`share` of the steps from the earlier argument `after` (the run's start when None) to the
    run's end: a position counted from `after`, or with ``length=True`` a number of steps."""

    share: float
    after: str | None = None
    length: bool = False

    def steps(self, total: int, known: Mapping[str, int]) -> int:
        start = known[self.after] if self.after else 0
        span = round(self.share * (total - start))
        return span if self.length or not self.after else start + span

    def __str__(self) -> str:
        if self.after is None:
            return f"{self.share:g} T"
        span = f"{self.share:g} (T - {self.after})"
        return span if self.length else f"{self.after} + {span}"


@dataclass(frozen=True)
class Part(Default):
    """One `divisor`-th of the run (or of the earlier argument `of`), rounded down: how often an
    update happens, e.g. every 1% of the run."""

    divisor: int
    of: str | None = None

    def steps(self, total: int, known: Mapping[str, int]) -> int:
        return (known[self.of] if self.of else total) // self.divisor

    def __str__(self) -> str:
        return f"{self.of or 'T'} // {self.divisor}"


@dataclass(frozen=True)
class AtLeast(Default):
    """`default`, but never fewer than `minimum` steps (in a run too short for it)."""

    minimum: int
    default: Default

    def steps(self, total: int, known: Mapping[str, int]) -> int:
        return max(self.minimum, self.default.steps(total, known))

    def __str__(self) -> str:
        return f"max({self.minimum}, {self.default})"


@dataclass(frozen=True)
class Rest(Default):
    """The run's end less `default`: a position that many steps before the last one."""

    default: Default

    def steps(self, total: int, known: Mapping[str, int]) -> int:
        return total - self.default.steps(total, known)

    def __str__(self) -> str:
        return f"T - {self.default}"


class BudgetValue:
    """A value of a method's published schedule (``Sparsifier.paper_schedule``) that follows from
    the run's budget: `epochs` of training of `steps_per_epoch` optimizer steps each, given the
    schedule's values before it (`known`, already resolved)."""

    def resolve(self, epochs: float, steps_per_epoch: int, known: Mapping[str, Any]) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class OfBudget(BudgetValue):
    """`times` x the budget / `per` in epochs (``OfBudget(2, per=3)``: two thirds of the run);
    with ``per_partition=True`` also divided by the schedule's ``partitions`` (K): one GaP phase
    of a schedule whose K phases per round share that part of the budget."""

    times: float = 1
    per: int = 1
    per_partition: bool = False

    def resolve(self, epochs: float, steps_per_epoch: int, known: Mapping[str, Any]) -> float:
        del steps_per_epoch
        return self.times * epochs / (self.per * (known["partitions"] if self.per_partition else 1))


@dataclass(frozen=True)
class EverySteps(BudgetValue):
    """An interval of `steps` optimizer steps, or shorter where the run is too short to hold
    `updates` of them before the schedule's value `until` (in epochs): in epochs, as recipes
    state intervals."""

    steps: int
    updates: int
    until: str

    def resolve(self, epochs: float, steps_per_epoch: int, known: Mapping[str, Any]) -> float:
        del epochs
        before = int(known[self.until] * steps_per_epoch)
        return min(self.steps, max(1, before // self.updates)) / steps_per_epoch


class StepArgument:
    """A constructor argument that counts optimizer steps, declared once as a class attribute::

        end_step = StepArgument(Share(0.75), minimum=1, epochs="end_epoch")

    Assigning it (``self.end_step = end_step``) checks it is an integer >= `minimum`. From the
    declarations the base class derives ``config()``, the defaults a callback fills from the run's
    length (:meth:`fill`, in declaration order, so a default may use an earlier argument), the
    recipe key `epochs` (generated into the method's settings unless the settings declare it
    themselves) and its conversion to steps (:meth:`from_recipe`), and the defaults table.
    `within_run`: a value past the run's end is refused (positions; intervals are not). `note`
    adds to the default's words what a method's own ``fit_to_run`` does beyond it.
    """

    name: str

    def __init__(
        self,
        default: Default,
        *,
        minimum: int = 0,
        epochs: str | None = None,
        within_run: bool = False,
        note: str = "",
    ) -> None:
        self.default, self.minimum, self.epochs = default, minimum, epochs
        self.within_run, self.note = within_run, note

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> StepArgument: ...
    @overload
    def __get__(self, instance: object, owner: type) -> int: ...
    def __get__(self, instance: object | None, owner: type) -> StepArgument | int:
        if instance is None:
            return self
        try:
            return instance.__dict__[self.name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(self.name) from None

    def __set__(self, instance: object, value: int) -> None:
        instance.__dict__[self.name] = check_steps(self.name, value, self.minimum)

    def fill(self, total: int, known: Mapping[str, int]) -> int:
        """The default in a run of `total` optimizer steps (`known`: the earlier arguments)."""
        return max(self.minimum, self.default.steps(total, known))

    def from_recipe(self, epochs: float | None, run: RunLength, known: Mapping[str, int]) -> int:
        """The recipe's value in epochs as steps; None (left out) is the default of the run."""
        if epochs is not None:
            return run.steps(epochs, self.minimum)
        if run.total_steps is None:
            raise ValueError(f"the default of {self.epochs} needs the run's length: set training.epochs")
        return self.fill(run.total_steps, known)

    def shown(self) -> str:
        """The default in words, T being the run's optimizer steps (the docs' defaults table)."""
        text = str(self.default)
        if self.minimum and not isinstance(self.default, Fixed):
            text = f"max({self.minimum}, {text})"
        return f"{text}, {self.note}" if self.note else text

    def recipe_field(self) -> tuple[str, Any, Any]:
        """The recipe key as a settings dataclass field: epochs, bounded like the steps."""
        bound = {"gt": 0} if self.minimum >= 1 else {"ge": 0}
        default = self.default.in_recipe()
        if default is not None:
            return self.epochs or self.name, float, bounded(default, **bound)
        description = f"default: {self.shown()} (T: the run's optimizer steps)"
        return self.epochs or self.name, float | None, bounded(None, description=description, **bound)


def check_steps(name: str, value: int, minimum: int = 0) -> int:
    count = as_count(value)
    if count is None or count < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return count


def as_count(value: Any) -> int | None:
    """`value` as a plain ``int`` if it is an integer of any type (``int``, ``numpy.int64``, a 0-d
    integer tensor: anything with ``__index__``, as seeds are taken), else None. A bool is not a
    count, and neither is a float, ``3.0`` included (see :func:`growprune.seeding.check_seed`)."""
    if is_bool(value):
        return None
    try:
        return int(operator.index(value))
    except TypeError:
        return None
