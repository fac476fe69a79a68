"""The one table writer of the tasks' report sections."""

from __future__ import annotations

from growprune.records import Phase, PhaseName
from growprune.tasks.markdown import markdown_table


def test_cells_are_text_escaped_and_aligned_by_column() -> None:
    phase = Phase(PhaseName.FINETUNE, 3)
    lines = markdown_table(("epoch", "phase", "text"), "rll", [("1.00", phase, "a|b")])
    assert lines == [
        "| epoch | phase | text |",
        "|---:|---|---|",
        f"| 1.00 | {phase} | a\\|b |",
        "",
    ]
