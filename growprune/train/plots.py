"""Figures for ``growprune report``: training curves, the grow-and-prune schedule, per-layer sparsity.

Figures are drawn with matplotlib's object API on an explicit Agg canvas, never through pyplot:
a report then needs no display, and importing growprune in a notebook does not switch the
notebook's backend or leak figures into pyplot's global registry.

The functions take plain metric records (the dicts read from ``metrics.jsonl``) so they can be
reused on live metrics as well as on a finished run directory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

Record = Mapping[str, Any]

FINETUNE = "finetune"
#: Phases in which the masks are final: only accuracy reached there is a result at the target sparsity.
FINAL_MASK_PHASES = frozenset({FINETUNE, "done"})
#: Phases after the schedule has ended: nothing happens there worth a colour.
UNSHADED = frozenset({"done"})
FINETUNE_STYLE: dict[str, Any] = {"facecolor": "0.9", "edgecolor": "0.6", "hatch": "//", "linewidth": 0}
EVENT_COLOUR = "0.35"
STOP_COLOUR = "tab:red"
DPI = 110

_PARTITION_RE = re.compile(r"partition\s+(\d+)\s*/\s*(\d+)\s+dense")
_ROUND_RE = re.compile(r"round\s+(\d+)\s*/\s*(\d+)")


# -- small helpers ---------------------------------------------------------------------------
def as_float(value: Any) -> float | None:
    """A finite-or-NaN float, or None: metric files are written by hand-rolled loops and may hold junk."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def as_int(value: Any) -> int | None:
    number = as_float(value)
    return int(number) if number is not None and math.isfinite(number) else None


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (see the module docstring for why not pyplot)."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png", dpi=DPI)
    return path


def partition_colour(partition: int) -> Any:
    """Same colour for partition k in every figure, so the curves and the schedule read together."""
    palette = colormaps["tab10"] if partition <= 10 else colormaps["tab20"]
    return palette((partition - 1) % palette.N)


def phase_colour(name: str, names: Sequence[str]) -> Any:
    """Colour for a named phase of a method without partitions (stable for a given phase list)."""
    palette = colormaps["Set2"]
    return palette(list(names).index(name) % palette.N)


# -- the phase timeline ----------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """Steps ``[start, end)`` spent in one phase: the unit both phase charts shade."""

    start: float
    end: float
    name: str
    partition: int | None = None
    round: int | None = None

    @property
    def label(self) -> str:
        if self.partition is not None:
            return f"partition {self.partition} dense"
        return "fine-tune" if self.name == FINETUNE else self.name


def parse_phase(record: Record) -> tuple[str, int | None, int | None] | None:
    """(phase name, dense partition, round) of a record, or None if it does not say.

    Step and epoch records carry ``phase_name`` and ``dense_partition``; mask-change events only
    carry the human-readable ``phase`` string ("round 1/2, partition 3/4 dense"), so that is
    parsed too. Events are logged after the change, so their phase is the one that starts there.
    """
    text = record.get("phase")
    name = record.get("phase_name")
    partition = as_int(record.get("dense_partition"))
    round_ = None
    if isinstance(text, str):
        found = _PARTITION_RE.search(text)
        if partition is None and found:
            partition = int(found[1])
        if name is None:
            name = "gap" if found else text.strip()
        rounds = _ROUND_RE.search(text)
        round_ = int(rounds[1]) if rounds else None
    if not isinstance(name, str) or not name:
        return None
    return name, partition, round_


def phase_segments(records: Iterable[Record], end_step: float | None = None) -> list[Segment]:
    """Contiguous phases from every record that has a step and a phase.

    A phase is known only where something was logged, so a change is placed at the first record
    showing the new phase: exact at mask-change events, else to the logging interval. The first
    phase is assumed to run from step 0 and the last one to ``end_step`` (or the last record).
    """
    points: list[tuple[float, tuple[str, int | None, int | None]]] = []
    for record in records:
        step, phase = as_float(record.get("step")), parse_phase(record)
        if step is not None and math.isfinite(step) and phase is not None:
            points.append((step, phase))
    points.sort(key=lambda point: point[0])
    if not points:
        return []
    last = max(points[-1][0], end_step if end_step is not None else -math.inf)
    segments: list[Segment] = []
    start, current = min(0.0, points[0][0]), points[0][1]
    for step, phase in points[1:]:
        if not _same_phase(phase, current):
            segments.append(Segment(start, step, *current))
            start, current = step, phase
        elif current[2] is None:
            current = phase  # a record that names the round completes one that did not
    segments.append(Segment(start, last, *current))
    return [s for s in segments if s.end > s.start]


def _same_phase(a: tuple[str, int | None, int | None], b: tuple[str, int | None, int | None]) -> bool:
    """Same name and partition; rounds only differ if both records state one."""
    return a[:2] == b[:2] and (a[2] is None or b[2] is None or a[2] == b[2])


def _phase_names(segments: Sequence[Segment]) -> list[str]:
    names: list[str] = []
    for segment in segments:
        if segment.partition is None and segment.name not in names:
            names.append(segment.name)
    return names


def _span_style(segment: Segment, names: Sequence[str], alpha: float) -> dict[str, Any] | None:
    """How to shade one segment, or None when it is not worth a colour."""
    if segment.name in UNSHADED:
        return None
    if segment.partition is not None:
        return {"facecolor": partition_colour(segment.partition), "alpha": alpha, "linewidth": 0}
    if segment.name == FINETUNE:
        return dict(FINETUNE_STYLE)
    return {"facecolor": phase_colour(segment.name, names), "alpha": alpha, "linewidth": 0}


def shade_phases(axes: Sequence[Axes], segments: Sequence[Segment], alpha: float = 0.16) -> list[Patch]:
    """Shade every phase on each axis; returns legend handles, one per distinct phase.

    A run with a single phase (a dense baseline) is not shaded at all: one colour says nothing.
    """
    if len({s.label for s in segments if s.name not in UNSHADED}) < 2:
        return []
    names, handles, seen = _phase_names(segments), [], set()
    for segment in segments:
        style = _span_style(segment, names, alpha)
        if style is None:
            continue
        for ax in axes:
            ax.axvspan(segment.start, segment.end, zorder=0, **style)
        if segment.label not in seen:
            seen.add(segment.label)
            handles.append(Patch(label=segment.label, **style))
    return handles


def draw_events(axes: Sequence[Axes], event_steps: Sequence[float]) -> None:
    """Mask changes as thin vertical lines; fainter when there are many (RigL/SET update often)."""
    if not event_steps:
        return
    alpha = 0.55 if len(event_steps) <= 60 else 0.25
    for ax in axes:
        ax.vlines(
            event_steps,
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors=EVENT_COLOUR,
            linewidth=0.6,
            alpha=alpha,
            zorder=1,
        )


def draw_stop(axes: Sequence[Axes], stopped_at: float | None, planned_end: float | None = None) -> None:
    """Where an unfinished run stopped, so a short curve is not mistaken for a finished one.

    When the planned length is known the axis runs to it and the part not reached is left
    blank, which shows at a glance how far the run got.
    """
    if stopped_at is None:
        return
    room = planned_end is not None and planned_end > stopped_at
    for ax in axes:
        ax.axvline(stopped_at, color=STOP_COLOUR, linestyle="--", linewidth=1.2, zorder=3)
        if room:
            ax.axvspan(stopped_at, planned_end, facecolor="0.97", edgecolor="none", zorder=0)
            ax.set_xlim(right=planned_end)
    axes[0].annotate(
        "run stopped",
        (stopped_at, 1),
        xycoords=axes[0].get_xaxis_transform(),
        xytext=(4 if room else -4, -4),
        textcoords="offset points",
        ha="left" if room else "right",
        va="top",
        color=STOP_COLOUR,
        fontsize=8,
        zorder=6,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5},
    )


# -- training curves -------------------------------------------------------------------------
def best_epoch(epochs: Sequence[Record]) -> tuple[int, bool] | None:
    """Index of the epoch record with the best test accuracy, and whether its masks were final.

    Under GaP a partition is dense for most of training, and the accuracy of such a half-dense
    model is no result; so, like the engine's "best" checkpoint, only epochs logged in a
    final-mask phase (fine-tune, done) count when there are any. Runs without one (a dense
    baseline, a run stopped mid-schedule) fall back to every epoch and say so (False).
    """
    scored = [(i, as_float(r.get("test_acc"))) for i, r in enumerate(epochs)]
    scored = [(i, a) for i, a in scored if a is not None and math.isfinite(a)]
    final = [(i, a) for i, a in scored if epochs[i].get("phase_name") in FINAL_MASK_PHASES]
    pool = final or scored
    if not pool:
        return None
    index = max(pool, key=lambda item: (item[1], -item[0]))[0]  # first of equal bests
    return index, bool(final)


def smooth(values: Sequence[float]) -> np.ndarray:
    """Debiased exponential moving average, as TensorBoard draws it.

    Per-batch losses are too noisy to read a trend from; the window grows with the series
    (about n/30 points) so short runs are barely smoothed and long ones are readable. NaNs (a
    diverged step) are passed through without poisoning the average.
    """
    data = np.asarray(values, dtype=float)
    weight = min(0.995, max(0.0, 1.0 - 30.0 / max(len(data), 1)))
    out = np.full_like(data, np.nan)
    average, norm = 0.0, 0.0
    for index, value in enumerate(data):
        if math.isfinite(value):
            average = weight * average + (1 - weight) * value
            norm = weight * norm + (1 - weight)
        if norm > 0:
            out[index] = average / norm
    return out


def epoch_steps(epochs: Sequence[Record], steps: Sequence[Record]) -> list[float | None]:
    """The step at which each epoch record was logged, for plotting epochs on the step axis.

    Epoch records normally carry "step"; if one does not, it is interpolated from the step
    records' (epoch, step) pairs; without either it is None (that record is not plotted).
    """
    known = sorted(
        (e, s)
        for e, s in ((as_float(r.get("epoch")), as_float(r.get("step"))) for r in steps)
        if e is not None and s is not None
    )
    result: list[float | None] = []
    for record in epochs:
        step, epoch = as_float(record.get("step")), as_float(record.get("epoch"))
        if step is None and epoch is not None and len(known) >= 2:
            step = float(np.interp(epoch, [k[0] for k in known], [k[1] for k in known]))
        result.append(step)
    return result


def _series(
    records: Sequence[Record], xs: Sequence[float | None], key: str, scale: float = 1.0
) -> tuple[list[float], list[float]]:
    """(x, value) pairs of `key` where both are known, as two lists for ax.plot."""
    pairs = [(x, as_float(r.get(key))) for x, r in zip(xs, records)]
    pairs = [(x, y * scale) for x, y in pairs if x is not None and y is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _epoch_axis(ax: Axes, records: Sequence[Record], xs: Sequence[float | None]) -> None:
    """A secondary top axis in epochs: steps are exact, but people think in epochs.

    Drawn only when (step, epoch) pairs give a strictly increasing mapping, which it needs to
    be inverted; otherwise the axis is left out rather than mislabelled.
    """
    known = {(x, as_float(r.get("epoch"))) for x, r in zip(xs, records)}
    pairs = sorted((x, e) for x, e in known if x is not None and e is not None and x > 0)
    pairs = [(0.0, 0.0), *pairs]
    steps_, epochs_ = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    if len(pairs) < 2 or np.any(np.diff(steps_) <= 0) or np.any(np.diff(epochs_) <= 0):
        return
    top = ax.secondary_xaxis(
        "top",
        functions=(lambda s: interp_linear(s, steps_, epochs_), lambda e: interp_linear(e, epochs_, steps_)),
    )
    top.set_xlabel("epoch")


def interp_linear(x: Any, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp that extends the end segments instead of clamping.

    A secondary axis needs an invertible mapping over the whole view, margins included; a
    clamped one squeezes every tick into the data range and mislabels the axis.
    """
    x = np.asarray(x, dtype=float)
    out = np.interp(x, xp, fp)
    low, high = (fp[1] - fp[0]) / (xp[1] - xp[0]), (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    out = np.where(x < xp[0], fp[0] + (x - xp[0]) * low, out)
    return np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * high, out)


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _plot_accuracy(ax: Axes, epochs: Sequence[Record], xs: Sequence[float | None]) -> None:
    drawn = False
    for key, label, style in (("train_acc", "train", "o-"), ("test_acc", "test", "s-")):
        x, y = _series(epochs, xs, key, 100.0)
        if x:
            ax.plot(x, y, style, markersize=3.5, linewidth=1.4, label=label)
            drawn = True
    best = best_epoch(epochs)
    if best is not None and xs[best[0]] is not None:
        accuracy = float(epochs[best[0]]["test_acc"]) * 100
        label = f"best test {accuracy:.2f}%" + ("" if best[1] else " (masks not final)")
        ax.plot(
            xs[best[0]],
            accuracy,
            marker="*",
            markersize=13,
            color="gold",
            markeredgecolor="black",
            zorder=5,
            linestyle="none",
            label=label,
        )
    if not drawn:
        _no_data(ax, "no per-epoch evaluation logged yet")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="lower right", fontsize=8)


def _plot_loss(ax: Axes, steps: Sequence[Record], epochs: Sequence[Record], xs: Sequence[float | None]):
    x, y = _series(steps, [as_float(r.get("step")) for r in steps], "loss")
    if x:
        marker = "." if len(x) < 5 else None  # a line through one or two points would not show
        ax.plot(x, y, color="tab:blue", alpha=0.25, linewidth=0.7, label="train loss (per step)")
        ax.plot(x, smooth(y), color="tab:blue", linewidth=1.5, marker=marker, label="train loss (smoothed)")
    for key, label, colour in (
        ("train_loss", "train loss (epoch)", "navy"),
        ("test_loss", "test loss (epoch)", "tab:orange"),
    ):
        ex, ey = _series(epochs, xs, key)
        if ex:
            ax.plot(ex, ey, "o-", color=colour, markersize=3.5, linewidth=1.2, label=label)
    values = [v for line in ax.get_lines() for v in np.asarray(line.get_ydata(), float) if math.isfinite(v)]
    if not values:
        _no_data(ax, "no loss logged yet")
        return
    if min(values) > 0 and max(values) / min(values) > 30:
        ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)


def _plot_sparsity(ax: Axes, epochs: Sequence[Record], events: Sequence[Record], xs):
    """Overall sparsity through training: under GaP it dips while a partition is dense."""
    points = [(as_float(r.get("step")), as_float(r.get("sparsity"))) for r in events]
    points += [(x, as_float(r.get("sparsity"))) for x, r in zip(xs, epochs)]
    points = sorted((x, y * 100) for x, y in points if x is not None and y is not None)
    if points:
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            drawstyle="steps-post",
            color="tab:green",
            linewidth=1.4,
        )
        ax.set_ylim(-2, 102)
    else:
        _no_data(ax, "no sparsity logged")
    ax.set_ylabel("sparsity (%)")
    ax.grid(alpha=0.3)


def plot_curves(
    path: Path,
    steps: Sequence[Record],
    epochs: Sequence[Record],
    events: Sequence[Record],
    segments: Sequence[Segment],
    *,
    title: str = "",
    stopped_at: float | None = None,
    planned_end: float | None = None,
) -> Path:
    """Accuracy, loss and sparsity against the step, with GaP phases shaded and mask changes marked."""
    figure = _new_figure(11, 9)
    axes = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.3]})
    xs = epoch_steps(epochs, steps)
    _plot_accuracy(axes[0], epochs, xs)
    _plot_loss(axes[1], steps, epochs, xs)
    _plot_sparsity(axes[2], epochs, events, xs)
    handles: list[Any] = shade_phases(axes, segments)
    draw_events(axes, [s for s in (as_float(r.get("step")) for r in events) if s is not None])
    draw_stop(axes, stopped_at, planned_end)
    _epoch_axis(axes[0], [*steps, *epochs], [*(as_float(r.get("step")) for r in steps), *xs])
    axes[-1].set_xlabel("step")
    if events:
        handles.append(Line2D([], [], color=EVENT_COLOUR, linewidth=0.8, label="mask change"))
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


# -- the schedule chart ----------------------------------------------------------------------
def _label_span(ax: Axes, segment: Segment, y: float, total: float) -> None:
    """Write a phase's name inside its bar when the bar is wide enough to hold it."""
    if total > 0 and (segment.end - segment.start) / total > 0.07:
        ax.text(
            (segment.start + segment.end) / 2,
            y,
            segment.label,
            ha="center",
            va="center",
            fontsize=8,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5},
        )


def _round_marks(ax: Axes, segments: Sequence[Segment]) -> None:
    """Dashed line and label at the start of every GaP round."""
    seen: set[int] = set()
    for segment in segments:
        if segment.round is not None and segment.round not in seen:
            seen.add(segment.round)
            ax.axvline(segment.start, color="0.3", linestyle=":", linewidth=1)
            ax.annotate(
                f"round {segment.round}",
                (segment.start, 1),
                xycoords=ax.get_xaxis_transform(),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=8,
                va="bottom",
            )


def _schedule_partitions(
    ax: Axes, segments: Sequence[Segment], partitions: int, total: float, parallel: bool = False
) -> None:
    """One row per partition; with `parallel` (P-GaP) every partition is dense on its own worker."""
    names = _phase_names(segments)
    for segment in segments:
        width = segment.end - segment.start
        if segment.partition is not None:
            for row in range(1, partitions + 1) if parallel else [segment.partition]:
                ax.broken_barh(
                    [(segment.start, width)],
                    (row - 0.4, 0.8),
                    facecolors=partition_colour(row),
                    edgecolor="white",
                )
        elif (style := _span_style(segment, names, 0.35)) is not None:
            ax.axvspan(segment.start, segment.end, zorder=0, **style)
            _label_span(ax, segment, (partitions + 1) / 2, total)
    _round_marks(ax, segments)
    ax.set_yticks(range(1, partitions + 1), [f"partition {k}" for k in range(1, partitions + 1)])
    ax.set_ylim(partitions + 0.6, 0.4)


def _bar_style(name: str, names: Sequence[str]) -> dict[str, Any]:
    """Bar colours of the one-row chart: fine-tune grey and hatched as in the curves, done blank."""
    if name == FINETUNE:
        return {
            "facecolor": FINETUNE_STYLE["facecolor"],
            "hatch": FINETUNE_STYLE["hatch"],
            "edgecolor": "0.5",
        }
    colour = "white" if name in UNSHADED else phase_colour(name, names)
    return {"facecolor": colour, "edgecolor": "0.5"}


def _schedule_phases(ax: Axes, segments: Sequence[Segment], total: float) -> None:
    names = _phase_names(segments)
    for segment in segments:
        ax.broken_barh(
            [(segment.start, segment.end - segment.start)], (0.6, 0.8), **_bar_style(segment.name, names)
        )
        _label_span(ax, segment, 1.0, total)
    ax.set_yticks([1], ["phase"])
    ax.set_ylim(0.3, 1.7)
    handles = [Patch(label=Segment(0, 0, n).label, **_bar_style(n, names)) for n in names]
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=min(len(names), 6), fontsize=8
    )


def plot_schedule(
    path: Path,
    segments: Sequence[Segment],
    events: Sequence[Record],
    *,
    partitions: int | None = None,
    parallel: bool = False,
    title: str = "",
    stopped_at: float | None = None,
    planned_end: float | None = None,
) -> Path:
    """Which partition is dense when (one row per partition), or the phase names for other methods.

    `parallel` marks P-GaP, where worker k holds partition k dense throughout every round.
    """
    partitions = max([partitions or 0] + [s.partition or 0 for s in segments]) or None
    height = 1.6 + 0.42 * partitions if partitions else 2.6
    figure = _new_figure(11, height)
    ax = figure.subplots()
    total = max((s.end for s in segments), default=0.0)
    if not segments:
        _no_data(ax, "no phase information logged")
    elif partitions:
        _schedule_partitions(ax, segments, partitions, total, parallel)
    else:
        _schedule_phases(ax, segments, total)
    draw_events([ax], [s for s in (as_float(r.get("step")) for r in events) if s is not None])
    if total > 0:
        ax.set_xlim(0, total)
    draw_stop([ax], stopped_at, planned_end)
    ax.set_xlabel("step")
    ax.grid(axis="x", alpha=0.3)
    if title:
        suffix = " (worker k grows partition k, in parallel)" if parallel and partitions else ""
        ax.set_title(title + suffix, pad=16)  # room for the round labels above the axes
    return _save(figure, path)


# -- per-layer sparsity ----------------------------------------------------------------------
def plot_layers(path: Path, layers: Sequence[Record], overall: float | None, *, title: str = "") -> Path:
    """Horizontal bars, one per layer in model order, the figure growing with the layer count."""
    names = [str(layer.get("name", f"layer {i}")) for i, layer in enumerate(layers)]
    values = [(as_float(layer.get("sparsity")) or 0.0) * 100 for layer in layers]
    count = len(layers)
    font = 9 if count <= 30 else 7 if count <= 80 else 5
    row = 0.26 if count <= 30 else 0.17 if count <= 80 else 0.11
    figure = _new_figure(10, min(2.0 + row * count, 120.0))
    ax = figure.subplots()
    positions = np.arange(count)
    ax.barh(positions, values, color="tab:blue", height=0.75)
    ax.set_yticks(positions, names, fontsize=font)
    ax.set_ylim(count - 0.5, -0.5)
    if count <= 80:
        for y, value in zip(positions, values):
            ax.text(min(value, 100) + 0.5, y, f"{value:.1f}", va="center", fontsize=font - 1)
    if overall is not None:
        # Labelled above the axes rather than in a legend, which would hide the bars of some layer.
        ax.axvline(overall * 100, color="tab:red", linestyle="--", linewidth=1.4)
        ax.annotate(
            f"overall {overall * 100:.2f}%",
            (overall * 100, 1),
            xycoords=ax.get_xaxis_transform(),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            color="tab:red",
            fontsize=8,
        )
    ax.set_xlim(0, 108)
    ax.set_xlabel("sparsity (% zeros)")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, pad=14)
    return _save(figure, path)
