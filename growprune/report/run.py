"""``growprune report RUN_DIR``: plots and a Markdown summary of a finished or partial run.

The report is read straight from the files a run leaves behind (``recipe.yaml``,
``metrics.jsonl``, optionally ``sparsity.json``), with no model import, so it works on a laptop
for a run trained elsewhere, and on a run that is still going or was killed: a report is most
wanted exactly when something went wrong. The metric lines are read as the typed records the
training loop writes (:mod:`growprune.records`); everything is treated as optional except that
``metrics.jsonl`` must hold at least one record. The planned length and the partitions come
from the run's start record; a run written before there was one reports them as unknown.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from growprune.bounded import DataFileError, read_json, read_text
from growprune.errors import UsageError
from growprune.records import (
    METRICS_FILE,
    EpochRecord,
    FinalRecord,
    MaskEvent,
    MergeRecord,
    Record,
    StartRecord,
    StepRecord,
    as_float,
    as_int,
    read_records,
)
from growprune.report.figures import plot_curves, plot_layers, plot_schedule
from growprune.report.timeline import Segment, best_epoch, phase_segments
from growprune.tasks.registry import FALLBACK_TASK, TASKS, SummaryScore, TaskSpec, task_for_dataset

REPORT_DIR = "report"
CURVES, SCHEDULE, LAYERS = "curves.png", "schedule.png", "layers.png"


@dataclass
class RunData:
    """Everything the report needs from a run directory: the typed records, sorted by kind."""

    run_dir: Path
    recipe: dict[str, Any] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)  # every record, in the order written
    start: StartRecord | None = None
    steps: list[StepRecord] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)
    events: list[MaskEvent] = field(default_factory=list)
    merges: list[MergeRecord] = field(default_factory=list)
    final: FinalRecord | None = None
    layers: list[dict[str, Any]] = field(default_factory=list)
    overall: float | None = None
    skipped_lines: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.final is not None

    @property
    def last_step(self) -> float | None:
        final = [self.final] if self.final else []
        values = [float(r.step) for r in (*self.steps, *self.epochs, *self.events, *final)]
        return max((v for v in values if math.isfinite(v)), default=None)

    @property
    def last_epoch(self) -> float | None:
        values = [r.epoch for r in (*self.steps, *self.epochs)]
        return max((v for v in values if math.isfinite(v)), default=None)

    @property
    def phased(self) -> list[StepRecord | EpochRecord | MaskEvent]:
        """The records that state a phase, in the order written (the timeline's input)."""
        return [r for r in self.records if isinstance(r, StepRecord | EpochRecord | MaskEvent)]

    def section(self, name: str) -> dict[str, Any]:
        value = self.recipe.get(name)
        return value if isinstance(value, dict) else {}


class ReportError(UsageError, ValueError):
    """A directory that holds no run to report on; the message says what is missing."""


# Caps for the small files beside metrics.jsonl (each a few kB when a run writes it).
MAX_RECIPE_BYTES = 16 * 2**20
MAX_SPARSITY_BYTES = 64 * 2**20


# -- reading ---------------------------------------------------------------------------------
def read_recipe(path: Path, notes: list[str]) -> dict[str, Any]:
    """The recipe as a mapping; a missing or unreadable one only costs the report its title."""
    if not os.path.lexists(path):
        notes.append(f"`{path.name}` not found: method, model and data are unknown.")
        return {}
    try:
        recipe = yaml.safe_load(read_text(path, max_bytes=MAX_RECIPE_BYTES, what="a recipe"))
    except DataFileError as error:
        notes.append(f"`{path.name}` could not be read: {str(error).removeprefix(f'{path}: ')}.")
        return {}
    except (yaml.YAMLError, RecursionError) as error:
        notes.append(f"`{path.name}` could not be parsed ({type(error).__name__}).")
        return {}
    if not isinstance(recipe, dict):
        notes.append(f"`{path.name}` is not a mapping: method, model and data are unknown.")
        return {}
    return recipe


def read_sparsity(path: Path) -> tuple[list[dict[str, Any]], float | None]:
    """Per-layer entries and overall sparsity from ``sparsity.json``, or nothing when absent/bad."""
    if not path.exists():
        return [], None
    try:
        data = read_json(path, max_bytes=MAX_SPARSITY_BYTES, expected="a sparsity report")
    except DataFileError:  # a damaged, huge or non-regular file: the final record has the figures
        return [], None
    if not isinstance(data, dict):
        return [], None
    layers = [layer for layer in data.get("layers") or [] if isinstance(layer, dict)]
    return layers, as_float(data.get("overall"))


def load_run(run_dir: Path) -> RunData:
    """Parse a run directory; raises only when there is nothing at all to report on.

    Unreadable lines (a killed run's half-written last one) are skipped and listed in the report,
    since a bad line in the middle means a damaged file.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run directory not found: {run_dir} (give the directory a training run wrote)")
    metrics = run_dir / METRICS_FILE
    if not os.path.lexists(metrics):
        raise ReportError(f"no metrics file: {metrics} (a run directory must contain metrics.jsonl)")
    try:
        parsed = read_records(metrics)
    except DataFileError as error:  # a FIFO, a link to /dev/zero, a directory, a dangling link
        raise ReportError(f"metrics file {str(error).replace(f'{metrics}: ', f'{metrics} ', 1)}") from None
    if not parsed.records:
        raise ReportError(
            f"{metrics} holds no metric records, so there is nothing to report; the run stopped before "
            "its first record (train it again, or --resume it if it has checkpoints)"
        )
    run = RunData(run_dir=run_dir, records=parsed.records, skipped_lines=parsed.skipped_lines)
    run.recipe = read_recipe(run_dir / "recipe.yaml", run.notes)
    for record in parsed.records:
        if isinstance(record, StartRecord):
            run.start = run.start or record  # a resumed run keeps its first one
        elif isinstance(record, StepRecord):
            run.steps.append(record)
        elif isinstance(record, EpochRecord):
            run.epochs.append(record)
        elif isinstance(record, MaskEvent):
            run.events.append(record)
        elif isinstance(record, MergeRecord):
            run.merges.append(record)
        elif isinstance(record, FinalRecord):
            run.final = record
    if run.start is None:
        run.notes.append(
            "No start record (a run written by an older version): the planned length and the "
            "partitions are unknown."
        )
    _attach_layers(run, run_dir / "sparsity.json")
    return run


def _attach_layers(run: RunData, sparsity_json: Path) -> None:
    """Per-layer sparsity from the final record, else from sparsity.json, and the overall figure."""
    file_layers, file_overall = read_sparsity(sparsity_json)
    final_layers = [dict(layer) for layer in run.final.layers] if run.final else []
    run.layers = final_layers or file_layers
    run.overall = run.final.sparsity if run.final else None
    if run.overall is None:
        run.overall = file_overall
    if run.overall is None and run.layers:
        numel = sum(as_int(layer.get("numel")) or 0 for layer in run.layers)
        zeros = sum(as_int(layer.get("zeros")) or 0 for layer in run.layers)
        run.overall = zeros / numel if numel else None


# -- numbers for the summary -----------------------------------------------------------------
def last_value(records: Sequence[EpochRecord | MaskEvent], value: Any) -> float | None:
    """The last known ``value(record)`` (None where a record does not state it)."""
    for record in reversed(records):
        found = value(record)
        if found is not None:
            return found
    return None


def planned_end(run: RunData) -> float | None:
    """The step an unfinished run would have ended at, as its start record planned it."""
    if run.finished or run.start is None:
        return None
    return float(run.start.total_steps)


def wall_seconds(run: RunData) -> float | None:
    if run.final is not None and run.final.train_seconds is not None:
        return run.final.train_seconds
    times = [r.time for r in (*run.steps, *run.epochs)]
    return max((t for t in times if t is not None and math.isfinite(t)), default=None)


# -- formatting ------------------------------------------------------------------------------
def percent(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value * 100:.2f} %"


def duration(seconds: float | None) -> str:
    """'8 min 32 s' rather than '512.3': wall time is read by people comparing runs."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def number(value: Any) -> str:
    """Integers with thousands separators, floats compactly, anything else as given."""
    number_ = as_float(value)
    if number_ is None:
        return "n/a" if value is None else str(value)
    return f"{number_:,.0f}" if number_.is_integer() else f"{number_:g}"


def cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def method_title(run: RunData) -> str:
    """How the method calls itself: the start record's title, else the registered method's, else the name."""
    if run.start is not None:
        return run.start.title
    name = run.section("method").get("name")
    if not isinstance(name, str) or not name:
        return "unknown method"
    from growprune.methods import METHODS  # only for runs without a start record

    method = METHODS.get(name) or METHODS.get(name.lower())
    return method.title if method is not None else name


def title_of(run: RunData) -> str:
    model = run.section("model").get("name", "unknown model")
    data = run.section("data").get("name", "unknown data")
    return f"{method_title(run)}: {model} on {data}"


# -- Markdown --------------------------------------------------------------------------------
def status_lines(run: RunData) -> list[str]:
    """The unfinished-run warning and any data problems, stated before any number is read."""
    lines: list[str] = []
    if not run.finished:
        epoch = run.last_epoch
        where = f"step {number(run.last_step)}" + (f" (epoch {epoch:.2f})" if epoch is not None else "")
        if run.start is not None and run.last_step is not None:
            planned = run.start.total_steps
            where += f" of {planned:,} planned ({run.last_step / max(1, planned):.0%})"
        lines.append(
            f"> **Unfinished run:** no final record; metrics stop at {where}. Figures below are "
            "the last logged values, not final results."
        )
    if run.skipped_lines:
        shown = ", ".join(map(str, run.skipped_lines[:10])) + (" ..." if len(run.skipped_lines) > 10 else "")
        lines.append(f"> Skipped {len(run.skipped_lines)} unreadable line(s) of metrics.jsonl: {shown}.")
    lines.extend(f"> {note}" for note in run.notes)
    return lines


def params_text(run: RunData) -> str:
    kept, total = (run.final.params_kept, run.final.params_total) if run.final else (None, None)
    if kept is None or not total:
        return "n/a"
    return f"{kept:,} / {total:,} ({kept / total * 100:.2f} % kept)"


def memory_text(run: RunData) -> str | None:
    """Peak memory of the process that finished the run; None for a run that did not record it."""
    final = run.final
    if final is None or (final.peak_rss_mib is None and final.peak_cuda_mib is None):
        return None
    parts = []
    if final.peak_cuda_mib is not None:
        parts.append(f"{final.peak_cuda_mib:,.0f} MiB CUDA allocated")
    if final.peak_rss_mib is not None:
        above = final.peak_rss_above_start_mib
        rss = f"{final.peak_rss_mib:,.0f} MiB process RSS"
        parts.append(rss + (f" ({above:,.0f} MiB above the start of training)" if above is not None else ""))
    storage = run.section("method").get("storage", "masked")
    return "; ".join(parts) + f"; {storage} storage"


def planned_text(start: StartRecord | None) -> str:
    """The planned length from the start record; "unknown" for a run written without one."""
    if start is None:
        return "unknown"
    text = f"{start.total_steps:,} steps ({number(round(start.total_epochs, 2))} epochs)"
    if start.process_steps != start.total_steps:  # single-process P-GaP trains its workers in turn
        text += f"; this process trains {start.process_steps:,} (the workers one after another)"
    return text


def partitions_text(start: StartRecord | None) -> str | None:
    """K and how the partitions are trained, or None for a method without partitions."""
    if start is None:
        return "unknown"
    if not start.num_partitions:
        return None
    how = "in parallel, one per worker" if start.parallel_partitions else "one after another"
    return f"{start.num_partitions} ({how})"


def events_text(events: Sequence[MaskEvent]) -> str:
    counts = Counter(e.event for e in events)
    detail = ", ".join(f"{name}: {count}" for name, count in counts.items())
    return f"{len(events)} ({detail})" if events else "0"


def best_row(epochs: Sequence[EpochRecord], key: str, label: str) -> tuple[str, str]:
    """The best `key` at final masks (see timeline.best_epoch), naming its epoch."""
    best = best_epoch(epochs, key)
    if best is None:
        return label, "n/a"
    record = epochs[best[0]]
    name = label + (" (final masks)" if best[1] else " (any epoch; masks never final)")
    return name, f"{percent(record.scores.get(key))} (epoch {number(record.epoch)})"


def run_task(run: RunData) -> TaskSpec:
    """The task the run names in its records; a run from before records named it, by its
    recipe's dataset (the registry's fallback task when the recipe is unreadable)."""
    named = (run.start and run.start.task) or (run.final and run.final.task)
    if named in TASKS:
        return TASKS[str(named)]
    data = run.recipe.get("data")
    dataset = data.get("name") if isinstance(data, dict) else None
    return task_for_dataset(str(dataset)) if dataset else TASKS[FALLBACK_TASK]


def summary_row(score: SummaryScore, run: RunData, suffix: str) -> tuple[str, str]:
    """One row heading the summary, as the task's registry entry declares it."""

    def shown(value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return "n/a"
        if score.fmt == "percent":
            return percent(value)
        if score.fmt == "perplexity":  # a negated log-perplexity (higher is better), shown as perplexity
            return f"{math.exp(-value):.2f}" if -value < 700 else "n/a"
        return format(value, score.fmt)

    if score.of == "best_final_masks":
        return best_row(run.epochs, score.key, score.label)
    if score.of == "best":
        return score.label, shown(
            max((e.scores[score.key] for e in run.epochs if score.key in e.scores), default=None)
        )
    if run.final is not None:
        return score.label, shown(run.final.scores.get(score.key))
    if score.last_logged:
        return score.label + suffix, shown(last_value(run.epochs, lambda e: e.scores.get(score.key)))
    return score.label, "n/a (unfinished)"


def summary_table(run: RunData) -> list[str]:
    if run.final is not None:
        sparsity = run.overall
        suffix = ""
    else:
        sparsity = last_value(sorted([*run.epochs, *run.events], key=lambda r: r.step), lambda r: r.sparsity)
        suffix = " (last logged, unfinished)"
    head = [summary_row(score, run, suffix) for score in run_task(run).summary]
    partitions = partitions_text(run.start)
    rows = [
        *head,
        ("final sparsity" + suffix, percent(sparsity)),
        ("planned length", planned_text(run.start)),
        *([("partitions", partitions)] if partitions is not None else []),
        ("parameters kept / total", params_text(run)),
        ("wall time", duration(wall_seconds(run)) + ("" if run.finished else " (so far)")),
        *([("computed on", platform)] if (platform := run.start and run.start.platform_text) else []),
        *([("peak memory", memory)] if (memory := memory_text(run)) else []),
        ("mask-change events", events_text(run.events)),
        ("last step", number(run.last_step)),
    ]
    return ["| | |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)]


def recipe_lines(run: RunData) -> list[str]:
    """The method's settings on one line each: what a reader needs to tell two reports apart."""
    method = run.section("method")
    if not method:
        return []
    lines = ["## Method", ""]
    ordered = sorted(method.items(), key=lambda item: item[0] != "name")  # name first, rest as written
    lines += [f"- `{key}`: `{json.dumps(value, default=str)}`" for key, value in ordered]
    epochs = run.section("training").get("epochs")
    if epochs is not None:
        lines.append(f"- training epochs: `{epochs}`")
    return [*lines, ""]


def layer_table(layers: Sequence[Mapping[str, Any]], overall: float | None) -> list[str]:
    lines = ["| layer | shape | numel | zeros | sparsity |", "|---|---|---:|---:|---:|"]
    for layer in layers:
        shape = layer.get("shape")
        shape_text = "x".join(map(str, shape)) if isinstance(shape, list) else cell(shape or "")
        lines.append(
            f"| {cell(layer.get('name', '?'))} | {shape_text} | {number(layer.get('numel'))} | "
            f"{number(layer.get('zeros'))} | {percent(as_float(layer.get('sparsity')))} |"
        )
    numel = sum(as_int(layer.get("numel")) or 0 for layer in layers)
    zeros = sum(as_int(layer.get("zeros")) or 0 for layer in layers)
    total = zeros / numel if numel else overall  # the row adds up the rows above it
    lines.append(f"| **overall** | | {numel:,} | {zeros:,} | {percent(total)} |")
    return lines


def merge_table(merges: Sequence[MergeRecord]) -> list[str]:
    """P-GaP merges: what each round exchanged and how long ranks waited for the slowest one."""
    if not merges:
        return []
    lines = [
        "## P-GaP merges",
        "",
        "| round | step | bytes exchanged | wait | merge |",
        "|---:|---:|---:|---:|---:|",
    ]
    for m in merges:
        lines.append(
            f"| {m.round} | {m.step} | {m.bytes_exchanged:,} | {1000 * m.wait_seconds:.1f} ms | "
            f"{1000 * m.merge_seconds:.1f} ms |"
        )
    total = sum(m.bytes_exchanged for m in merges)
    return [*lines, "", f"Total exchanged at merges: {total:,} bytes per rank.", ""]


def render_markdown(run: RunData, images: Mapping[str, str]) -> str:
    """The report text; ``images`` maps a section to the file name written next to report.md."""
    status = status_lines(run)
    lines = [f"# {title_of(run)}", "", f"Run directory: `{run.run_dir.name}`", ""]
    for line in status:  # separate quotes, or Markdown runs them into one paragraph
        lines += [line, ""]
    lines += ["## Summary", "", *summary_table(run), ""]
    lines += run_task(run).report_section(run.run_dir, run.epochs, run.final)
    lines += recipe_lines(run)
    lines += [
        "## Training curves",
        "",
        f"![training curves]({images['curves']})",
        "",
        "Shading: the schedule phase (a colour per dense partition, grey hatching for fine-tune); thin "
        "vertical lines: mask changes.",
        "",
    ]
    lines += ["## Schedule", "", f"![schedule]({images['schedule']})", ""]
    lines += merge_table(run.merges)
    lines += ["## Per-layer sparsity", ""]
    if run.layers:
        source = "final record" if run.final is not None and run.final.layers else "sparsity.json"
        lines += [
            f"![per-layer sparsity]({images['layers']})",
            "",
            f"From the {source}.",
            "",
            *layer_table(run.layers, run.overall),
        ]
    else:
        lines.append("No per-layer sparsity yet (it is written when the run finishes).")
    return "\n".join(lines) + "\n"


# -- the entry point -------------------------------------------------------------------------
def write_figures(run: RunData, out_dir: Path) -> dict[str, str]:
    """Draw the three figures into ``out_dir``; returns section -> file name (relative links)."""
    parallel = run.start is not None and run.start.parallel_partitions
    segments: list[Segment] = phase_segments(run.phased, run.last_step, parallel=parallel)
    stop = {"stopped_at": None if run.finished else run.last_step, "planned_end": planned_end(run)}
    title = title_of(run)
    plot_curves(out_dir / CURVES, run.steps, run.epochs, run.events, segments, title=title, **stop)
    plot_schedule(
        out_dir / SCHEDULE,
        segments,
        run.events,
        partitions=run.start.num_partitions if run.start else None,
        title=f"Schedule - {title}",
        **stop,
    )
    images = {"curves": CURVES, "schedule": SCHEDULE}
    if run.layers:
        plot_layers(out_dir / LAYERS, run.layers, run.overall, title=f"Per-layer sparsity - {title}")
        images["layers"] = LAYERS
    else:
        (out_dir / LAYERS).unlink(missing_ok=True)  # a stale one from an earlier report would mislead
    return images


def write_report(run_dir: Path) -> Path:
    """Write ``RUN_DIR/report/`` (curves.png, schedule.png, layers.png, report.md); return report.md.

    Raises FileNotFoundError when the directory or its metrics.jsonl is missing, and ValueError
    when metrics.jsonl holds no records. An unfinished run is reported, not refused.
    """
    run = load_run(Path(run_dir))
    out_dir = run.run_dir / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    images = write_figures(run, out_dir)
    report = out_dir / "report.md"
    report.write_text(render_markdown(run, images), encoding="utf-8")
    return report
