"""Figures for ``growprune report``: training curves, the grow-and-prune schedule, per-layer sparsity.

Figures are drawn with matplotlib's object API on an explicit Agg canvas, never through pyplot:
a report then needs no display, and importing growprune in a notebook does not switch the
notebook's backend or leak figures into pyplot's global registry.

The functions take typed records (:mod:`growprune.records`) and the phase segments of
:mod:`growprune.report.timeline`, so they can be reused on live metrics as well as on a
finished run directory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from growprune.records import EpochRecord, MaskEvent, StepRecord, as_float
from growprune.report.timeline import FINETUNE, UNSHADED, Segment, best_epoch, phase_names, rounds

FINETUNE_STYLE: dict[str, Any] = {"facecolor": "0.9", "edgecolor": "0.6", "hatch": "//", "linewidth": 0}
ALL_PARTITIONS_COLOUR = "goldenrod"  # P-GaP: every partition dense, one per worker (not a tab10 colour)
EVENT_COLOUR = "0.35"
STOP_COLOUR = "tab:red"
DPI = 110


# -- small helpers ---------------------------------------------------------------------------
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


# -- phase shading -------------------------------------------------------------------------
def _span_style(segment: Segment, names: Sequence[str], alpha: float) -> dict[str, Any] | None:
    """How to shade one segment, or None when it is not worth a colour."""
    if segment.name in UNSHADED:
        return None
    if segment.all_partitions:
        return {"facecolor": ALL_PARTITIONS_COLOUR, "alpha": alpha, "linewidth": 0}
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
    names, handles, seen = phase_names(segments), [], set()
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


def _series(
    records: Sequence[Any], value: Callable[[Any], float | None], scale: float = 1.0
) -> tuple[list[float], list[float]]:
    """(step, value) of every record whose value is known, as two lists for ax.plot."""
    pairs = [(float(r.step), value(r)) for r in records]
    pairs = [(x, y * scale) for x, y in pairs if y is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _score(key: str) -> Callable[[EpochRecord], float | None]:
    return lambda record: record.scores.get(key)


def _epoch_axis(ax: Axes, records: Sequence[StepRecord | EpochRecord]) -> None:
    """A secondary top axis in epochs: steps are exact, but people think in epochs.

    Drawn only when (step, epoch) pairs give a strictly increasing mapping, which it needs to
    be inverted; otherwise the axis is left out rather than mislabelled.
    """
    known = {(float(r.step), r.epoch) for r in records}
    pairs = sorted((x, e) for x, e in known if x > 0 and math.isfinite(x) and math.isfinite(e))
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


def _plot_accuracy(ax: Axes, epochs: Sequence[EpochRecord]) -> None:
    drawn = False
    for value, label, style in (
        (lambda r: r.train_acc, "train", "o-"),
        (_score("test_acc"), "test", "s-"),
        (_score("val_acc"), "val (point accuracy)", "^-"),  # part segmentation scores val each epoch
    ):
        x, y = _series(epochs, value, 100.0)
        if x:
            ax.plot(x, y, style, markersize=3.5, linewidth=1.4, label=label)
            drawn = True
    best = best_epoch(epochs)
    if best is not None:
        record = epochs[best[0]]
        accuracy = record.scores["test_acc"] * 100
        label = f"best test {accuracy:.2f}%" + ("" if best[1] else " (masks not final)")
        ax.plot(
            record.step,
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


def _plot_loss(ax: Axes, steps: Sequence[StepRecord], epochs: Sequence[EpochRecord]) -> None:
    x, y = _series(steps, lambda r: r.loss)
    if x:
        marker = "." if len(x) < 5 else None  # a line through one or two points would not show
        ax.plot(x, y, color="tab:blue", alpha=0.25, linewidth=0.7, label="train loss (per step)")
        ax.plot(x, smooth(y), color="tab:blue", linewidth=1.5, marker=marker, label="train loss (smoothed)")
    for value, label, colour in (
        (lambda r: r.train_loss, "train loss (epoch)", "navy"),
        (_score("test_loss"), "test loss (epoch)", "tab:orange"),
        (_score("val_loss"), "val loss (epoch)", "tab:green"),
    ):
        ex, ey = _series(epochs, value)
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


def _plot_sparsity(ax: Axes, epochs: Sequence[EpochRecord], events: Sequence[MaskEvent]) -> None:
    """Overall sparsity through training: under GaP it dips while a partition is dense."""
    points = sorted((float(r.step), r.sparsity * 100) for r in (*events, *epochs) if r.sparsity is not None)
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


def _event_steps(events: Sequence[MaskEvent]) -> list[float]:
    return [float(e.step) for e in events]


def plot_curves(
    path: Path,
    steps: Sequence[StepRecord],
    epochs: Sequence[EpochRecord],
    events: Sequence[MaskEvent],
    segments: Sequence[Segment],
    *,
    title: str = "",
    stopped_at: float | None = None,
    planned_end: float | None = None,
) -> Path:
    """Accuracy, loss and sparsity against the step, with GaP phases shaded and mask changes marked."""
    figure = _new_figure(11, 9)
    axes = figure.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.3]})
    _plot_accuracy(axes[0], epochs)
    _plot_loss(axes[1], steps, epochs)
    _plot_sparsity(axes[2], epochs, events)
    handles: list[Any] = shade_phases(axes, segments)
    draw_events(axes, _event_steps(events))
    draw_stop(axes, stopped_at, planned_end)
    _epoch_axis(axes[0], [*steps, *epochs])
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
    for number, start in rounds(segments):
        ax.axvline(start, color="0.3", linestyle=":", linewidth=1)
        ax.annotate(
            f"round {number}",
            (start, 1),
            xycoords=ax.get_xaxis_transform(),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=8,
            va="bottom",
        )


def _schedule_partitions(ax: Axes, segments: Sequence[Segment], partitions: int, total: float) -> None:
    """One row per partition; under P-GaP (`all_partitions`) every one is dense on its own worker."""
    names = phase_names(segments)
    for segment in segments:
        width = segment.end - segment.start
        if segment.partition is not None or segment.all_partitions:
            rows = range(1, partitions + 1) if segment.all_partitions else [segment.partition]
            for row in rows:
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
    """One row of named phases (a method without partitions, or partitions of unknown number)."""
    names = list(dict.fromkeys(segment.name for segment in segments))
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
    events: Sequence[MaskEvent],
    *,
    partitions: int | None = None,
    title: str = "",
    stopped_at: float | None = None,
    planned_end: float | None = None,
) -> Path:
    """Which partition is dense when (one row per partition), or the phase names for other methods.

    Segments with ``all_partitions`` (P-GaP, where worker k holds partition k dense throughout
    every round) fill every row; `partitions` (K, from the start record) sizes the chart.
    """
    parallel = any(s.all_partitions for s in segments)
    partitions = max([partitions or 0] + [s.partition or 0 for s in segments]) or None
    height = 1.6 + 0.42 * partitions if partitions else 2.6
    figure = _new_figure(11, height)
    ax = figure.subplots()
    total = max((s.end for s in segments), default=0.0)
    if not segments:
        _no_data(ax, "no phase information logged")
    elif partitions:
        _schedule_partitions(ax, segments, partitions, total)
    else:
        _schedule_phases(ax, segments, total)
    draw_events([ax], _event_steps(events))
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
def plot_layers(
    path: Path, layers: Sequence[Mapping[str, Any]], overall: float | None, *, title: str = ""
) -> Path:
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
