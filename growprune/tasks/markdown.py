"""Markdown tables for the tasks' own report sections (one writer, so every section's tables look alike)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from growprune.records import EpochRecord


def markdown_table(header: Sequence[str], align: str, rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a table, a blank line after it. ``align``: one character a column, ``r`` for
    right-aligned (numbers), anything else left-aligned; cells are written with str() and escaped
    for ``|``."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    body = ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return ["| " + " | ".join(header) + " |", rule, *body, ""]


def score_cell(value: float | None, fmt: str = ".2f") -> str:
    """A score as a table cell, "n/a" where the run did not record it."""
    return format(value, fmt) if value is not None else "n/a"


def epoch_table(epochs: Sequence[EpochRecord], columns: Sequence[tuple[str, str, str]]) -> list[str]:
    """The per-epoch table of a section: the epoch, its phase, then one column of scores for each
    (heading, score key, format) of `columns`."""
    header = ("epoch", "phase", *(heading for heading, _, _ in columns))
    cells = (
        [
            f"{r.epoch:.2f}",
            str(r.phase) if r.phase else "",
            *(score_cell(r.scores.get(key), fmt) for _, key, fmt in columns),
        ]
        for r in epochs
    )
    return markdown_table(header, "rl" + "r" * len(columns), cells)
