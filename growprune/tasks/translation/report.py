"""The translation part of a run report: BLEU/chrF per epoch and a few test translations.

Kept apart from :mod:`growprune.report.run` because only translation runs have it; the
report calls :func:`translation_lines` and gets nothing back for other tasks.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from growprune.records import EpochRecord, FinalRecord
from growprune.tasks.markdown import epoch_table, markdown_table, score_cell

EXAMPLES_FILE = "translations.tsv"


def read_examples(run_dir: Path, limit: int) -> list[dict[str, str]]:
    """The first ``limit`` rows of the test translations the run wrote (none if absent)."""
    path = Path(run_dir) / EXAMPLES_FILE
    if not path.is_file() or limit <= 0:
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row for _, row in zip(range(limit), rows)]


def translation_lines(
    run_dir: Path, epochs: Sequence[EpochRecord], final: FinalRecord | None, examples: int = 5
) -> list[str]:
    """Markdown lines of the section, or [] when the run is not a translation run."""
    final_scores = final.scores if final is not None else {}
    if not any("valid_bleu" in e.scores for e in epochs) and "test_bleu" not in final_scores:
        return []
    lines = ["## Translation quality", ""]
    if "test_bleu" in final_scores:
        lines += [
            f"Final model on the test books: BLEU **{score_cell(final_scores['test_bleu'])}**, chrF "
            f"{score_cell(final_scores.get('test_chrf'))} (sacrebleu, beam search); validation BLEU "
            f"{score_cell(final_scores.get('valid_bleu'))} (greedy).",
            "",
        ]
    if epochs:
        lines += epoch_table(
            epochs,
            (
                ("valid loss", "valid_loss", ".2f"),
                ("valid BLEU (greedy)", "valid_bleu", ".2f"),
                ("valid chrF", "valid_chrf", ".2f"),
            ),
        )
    rows = read_examples(run_dir, examples)
    if rows:
        lines += ["Test translations (first verses of the test books):", ""]
        keys = ("ref", "source", "reference", "hypothesis")
        lines += markdown_table(
            ("verse", "source", "reference", "model"),
            "llll",
            ([row.get(k) or "" for k in keys] for row in rows),
        )
    return lines
