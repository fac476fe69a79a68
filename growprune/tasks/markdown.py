"""Markdown tables for the tasks' own report sections (one writer, so every section's tables look alike)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], align: str, rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a table, a blank line after it. ``align``: one character a column, ``r`` for
    right-aligned (numbers), anything else left-aligned; cells are written with str() and escaped
    for ``|``."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    body = ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return ["| " + " | ".join(header) + " |", rule, *body, ""]
