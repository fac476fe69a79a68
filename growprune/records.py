"""Typed records of a run: what the sparsifier and the training loop write, and reports read.

One dataclass per kind of line in ``metrics.jsonl`` (and per entry of a sparsifier's mask
history), with ``to_dict`` for the writer and ``from_dict`` for the readers, so the two sides
cannot drift apart and nothing is parsed back out of display text. Readers are forgiving on
purpose: a report is most wanted when a run was killed mid-write or written by an older version,
so ``from_dict`` takes what it can and leaves the rest as None rather than raising.

This module is a leaf (standard library only): the methods, the loop and the reports all import
it, and it imports none of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, TypeVar

from growprune.bounded import open_regular

METRICS_FILE = "metrics.jsonl"


# -- tolerant field readers ----------------------------------------------------------------------
def as_float(value: Any) -> float | None:
    """A float (possibly NaN/inf), or None: metric files may be damaged or hand-written."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_int(value: Any) -> int | None:
    number = as_float(value)
    return int(number) if number is not None and math.isfinite(number) else None


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _read_fields(cls: type, data: Mapping[str, Any], **given: Any) -> dict[str, Any]:
    """The constructor arguments of record class ``cls``: each field read from ``data`` by its
    declared type (:data:`_READERS`), so every record reads a number, an optional string or a phase
    the same forgiving way. ``given``: the fields whose reading is their own (a default taken from
    another field, a nested list, a string with its own placeholder)."""
    return {
        f.name: given[f.name] if f.name in given else _READERS[f.type](data.get(f.name)) for f in fields(cls)
    }


_R = TypeVar("_R", bound="_Fields")


class _Fields:
    """A record written as its dataclass fields (a nested Phase becomes a mapping too) and read back
    field by field by :func:`_read_fields`: the records whose lines hold nothing but their fields."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass

    @classmethod
    def from_dict(cls: type[_R], data: Mapping[str, Any]) -> _R:
        return cls(**_read_fields(cls, data))


# -- the schedule position -----------------------------------------------------------------------
class PhaseName:
    """The names of schedule phases, and what code asks of them (:attr:`Phase.masks_final`,
    :attr:`Phase.ended`). A third-party method may name other phases: those are neither."""

    DENSE = "dense"  # training dense before a prune (one-shot, GMP, ADMM) or the dense baseline
    PRUNING = "pruning"  # GMP's gradual prunes
    SPARSE_TRAINING = "sparse-training"  # SET and RigL's mask updates
    ADMM = "admm"  # ADMM's Z/U updates
    GAP = "gap"  # a GaP phase: one partition dense
    MERGED = "merged"  # P-GaP between rounds, the workers just merged
    FINETUNE = "finetune"  # the masks are final; training goes on
    DONE = "done"  # the schedule has ended
    MASKS_FINAL = frozenset({FINETUNE, DONE})
    ENDED = frozenset({DONE})


@dataclass(frozen=True)
class Phase(_Fields):
    """Where a schedule stands. Partition and round numbers are 1-based, as people count."""

    name: str  # a PhaseName (another name where a third-party method chose one)
    step: int
    round: int | None = None
    rounds: int | None = None
    dense_partition: int | None = None
    partitions: int | None = None

    @property
    def masks_final(self) -> bool:
        """True where the masks no longer change: only a score reached here is a result at the
        target sparsity."""
        return self.name in PhaseName.MASKS_FINAL

    @property
    def ended(self) -> bool:
        """True once the schedule has ended."""
        return self.name in PhaseName.ENDED

    def __str__(self) -> str:
        if self.dense_partition is not None:
            return (
                f"round {self.round}/{self.rounds}, partition {self.dense_partition}/{self.partitions} dense"
            )
        if self.name == PhaseName.MERGED and self.round is not None:
            return f"merged after round {self.round}/{self.rounds}"
        return self.name

    @classmethod
    def from_dict(cls, data: Any) -> Phase | None:
        """The phase a record states, or None when it states none."""
        if not isinstance(data, Mapping) or as_str(data.get("name")) is None:
            return None
        return cls(**_read_fields(cls, data, name=data["name"]))


# How a record field of each declared type is read (the annotation as written: this module's
# annotations are strings). A required number that is missing or damaged reads as 0; an optional
# one as None.
_READERS: dict[str, Callable[[Any], Any]] = {
    "int": lambda value: as_int(value) or 0,
    "float": lambda value: as_float(value) or 0.0,
    "bool": bool,
    "int | None": as_int,
    "float | None": as_float,
    "str | None": _optional_str,
    "Phase | None": Phase.from_dict,
    # a mapping of numbers (an epoch's sparsity per layer), its non-numbers dropped
    "dict[str, float]": lambda value: (
        {str(k): v for k, v in value.items() if as_float(v) is not None} if isinstance(value, Mapping) else {}
    ),
    # a list of mappings (the final per-layer rows), anything else in it dropped
    "list[dict[str, Any]]": lambda value: (
        [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
    ),
}


_S = TypeVar("_S", bound="_Scored")


class _Scored(_Fields):
    """A record that carries the task's scores (``scores``: ``test_acc``, ``valid_bleu``, ...): on
    disk they sit beside the record's own fields, as TensorBoard and earlier versions expect, with
    the ``derived`` properties the record adds for readers that do not build it."""

    derived: ClassVar[tuple[str, ...]] = ()
    scores: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in super().to_dict().items() if k != "scores"}
        return {**data, **self.scores, **{name: getattr(self, name) for name in self.derived}}

    @classmethod
    def from_dict(cls: type[_S], data: Mapping[str, Any]) -> _S:
        return cls(**_read_fields(cls, data, scores=_scores(data, cls)))


# -- records ---------------------------------------------------------------------------------------
@dataclass
class MaskEvent(_Fields):
    """A mask change: the schedule's event name and the phase that starts with it."""

    kind: ClassVar[str] = "event"
    step: int
    event: str
    phase: Phase | None
    sparsity: float | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MaskEvent:
        return cls(**_read_fields(cls, data, event=str(data.get("event", "?"))))


@dataclass
class StartRecord(_Fields):
    """What the run will do, as the built sparsifier and loader decided it.

    Reports read the planned length and the partitions from here instead of recomputing them
    from the recipe (which would be a second, drifting copy of the schedule arithmetic).
    """

    kind: ClassVar[str] = "start"
    method: str
    title: str
    steps_per_epoch: int
    total_steps: int  # optimizer steps of the schedule (what one worker trains)
    process_steps: int  # optimizer steps this process runs (single-process P-GaP replays K workers)
    partitions: list[list[str]] | None = None
    parallel_partitions: bool = False  # partitions trained at once by different workers (P-GaP)
    # Where it ran: the same recipe and seed give other numbers under other CPU kernels (AVX-512,
    # AVX2 and torch's unvectorized "DEFAULT" round differently), so a result names them.
    device: str | None = None
    cpu_kernels: str | None = None  # torch.backends.cpu.get_cpu_capability()
    threads: int | None = None
    torch_version: str | None = None
    task: str | None = None  # the registered task (growprune.tasks.registry); None in older runs

    @property
    def total_epochs(self) -> float:
        return self.total_steps / max(1, self.steps_per_epoch)

    @property
    def num_partitions(self) -> int | None:
        return len(self.partitions) if self.partitions else None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StartRecord | None:
        steps, total = as_int(data.get("steps_per_epoch")), as_int(data.get("total_steps"))
        if steps is None or total is None:
            return None
        parts = data.get("partitions")
        partitions = (
            [[str(n) for n in part] for part in parts if isinstance(part, list)]
            if isinstance(parts, list)
            else None
        )
        return cls(
            **_read_fields(
                cls,
                data,
                method=str(data.get("method", "unknown")),
                title=str(data.get("title") or data.get("method", "unknown")),
                steps_per_epoch=steps,
                total_steps=total,
                process_steps=as_int(data.get("process_steps")) or total,
                partitions=partitions or None,
            )
        )

    @property
    def platform_text(self) -> str | None:
        """ "cpu, AVX512 kernels, 2 threads, torch 2.13.0+cpu", or None for a run that did not record it."""
        if self.device is None:
            return None
        parts = [self.device]
        if self.cpu_kernels:
            parts.append(f"{self.cpu_kernels} kernels")
        if self.threads:
            parts.append(f"{self.threads} thread{'s' if self.threads != 1 else ''}")
        if self.torch_version:
            parts.append(f"torch {self.torch_version}")
        return ", ".join(parts)


@dataclass
class StepRecord(_Fields):
    """Every few optimizer steps: the training loss, learning rate and phase."""

    kind: ClassVar[str] = "step"
    step: int
    epoch: float
    loss: float | None
    lr: float | None
    phase: Phase | None
    time: float | None


@dataclass
class EpochRecord(_Scored):
    """The end of an epoch (or of a P-GaP round): training averages and the task's held-out scores.

    ``scores`` are the task's own metrics (``test_acc``, ``valid_bleu``, ...); on disk they sit
    beside the other fields, as TensorBoard and earlier versions expect.
    """

    kind: ClassVar[str] = "epoch"
    epoch: float
    step: int
    train_loss: float | None
    train_acc: float | None
    scores: dict[str, float]
    sparsity: float | None
    layer_sparsity: dict[str, float]
    lr: float | None
    phase: Phase | None
    time: float | None


@dataclass
class MergeRecord(_Fields):
    """A P-GaP merge: what one rank exchanged and how long it waited for the slowest worker."""

    kind: ClassVar[str] = "merge"
    round: int
    step: int
    bytes_exchanged: int
    wait_seconds: float
    merge_seconds: float


@dataclass
class FinalRecord(_Scored):
    """The finished run: the task's full final scores and the sparsity actually reached."""

    kind: ClassVar[str] = "final"
    derived: ClassVar[tuple[str, ...]] = ("score",)
    step: int
    scores: dict[str, float]
    score_name: str
    sparsity: float | None
    params_total: int | None
    params_kept: int | None
    train_seconds: float | None
    layers: list[dict[str, Any]] = field(default_factory=list)
    # Peak memory of the process that finished the run (growprune.train.memory says how measured).
    peak_rss_mib: float | None = None
    peak_rss_above_start_mib: float | None = None
    peak_cuda_mib: float | None = None
    task: str | None = None  # the registered task (growprune.tasks.registry); None in older runs

    @property
    def score(self) -> float | None:
        return self.scores.get(self.score_name)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinalRecord:
        return cls(
            **_read_fields(cls, data, scores=_scores(data, cls), score_name=str(data.get("score_name", "")))
        )


def _scores(data: Mapping[str, Any], record: type[_Scored]) -> dict[str, float]:
    """The numeric fields that are not the record's own (its dataclass fields but ``scores``, which
    is written spread out, and the ``derived`` keys its to_dict adds): the task's scores."""
    skip = {"type", *(f.name for f in fields(record) if f.name != "scores"), *record.derived}
    return {
        str(k): float(v)
        for k, v in data.items()
        if k not in skip and isinstance(v, int | float) and not isinstance(v, bool)
    }


Record = StartRecord | StepRecord | EpochRecord | MaskEvent | MergeRecord | FinalRecord
RECORD_TYPES: dict[str, type[Any]] = {
    cls.kind: cls for cls in (StartRecord, StepRecord, EpochRecord, MaskEvent, MergeRecord, FinalRecord)
}


def record_to_json(record: Record) -> dict[str, Any]:
    """The line written to ``metrics.jsonl``: the record's fields plus its ``type``."""
    return {"type": record.kind, **record.to_dict()}


def record_from_json(data: Any) -> Record | None:
    """The typed record of one parsed line, or None for a line of unknown kind or no mapping."""
    if not isinstance(data, Mapping):
        return None
    cls = RECORD_TYPES.get(str(data.get("type")))
    return cls.from_dict(data) if cls is not None else None


@dataclass
class MetricsFile:
    """All records of one ``metrics.jsonl``, typed, and the 1-based numbers of unreadable lines."""

    records: list[Record]
    skipped_lines: list[int]


# A record is a few kB (a final record lists every layer); a line past this is damage, and is
# skipped without being held in memory. The file itself grows with the run, so its cap is loose.
MAX_RECORD_LINE = 16 * 2**20
MAX_METRICS_BYTES = 2**40


def _lines(file: BinaryIO) -> Iterator[str | None]:
    """The file's lines decoded (bad bytes replaced), each read at most MAX_RECORD_LINE bytes at a
    time; None for a line longer than that (its remainder is read and dropped piece by piece)."""
    while True:
        line = file.readline(MAX_RECORD_LINE + 1)
        if not line:
            return
        if len(line) > MAX_RECORD_LINE and not line.endswith(b"\n"):
            while (more := file.readline(MAX_RECORD_LINE)) and not more.endswith(b"\n"):
                pass
            yield None
            continue
        yield line.decode("utf-8", errors="replace")


def read_records(path: Path) -> MetricsFile:
    """Parse a metrics file; bad lines (a killed run's half-written last one) are counted, not fatal."""
    records: list[Record] = []
    skipped: list[int] = []
    with open_regular(path, max_bytes=MAX_METRICS_BYTES, what="a metrics file") as file:
        for number, line in enumerate(_lines(file), start=1):
            if line is None:  # longer than any record: damaged (or not a metrics file)
                skipped.append(number)
                continue
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                record = record_from_json(data)
            except (json.JSONDecodeError, TypeError, ValueError):
                data, record = None, None
            if record is not None:
                records.append(record)
            elif not (isinstance(data, Mapping) and data.get("type") not in RECORD_TYPES):
                skipped.append(number)  # unreadable; a record of a kind this version does not know is not
    return MetricsFile(records, skipped)
