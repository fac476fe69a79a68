"""The translation part of a run report: BLEU/chrF per epoch and a few test translations.

Kept apart from :mod:`growprune.train.run_report` because only translation runs have it; the
report calls :func:`translation_lines` and gets nothing back for other tasks.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EXAMPLES_FILE = "translations.tsv"


def _score(value: Any) -> str:
    return f"{float(value):.2f}" if isinstance(value, (int, float)) else "n/a"


def read_examples(run_dir: Path, limit: int) -> list[dict[str, str]]:
    """The first ``limit`` rows of the test translations the run wrote (none if absent)."""
    path = Path(run_dir) / EXAMPLES_FILE
    if not path.is_file() or limit <= 0:
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row for _, row in zip(range(limit), rows)]


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def translation_lines(
    run_dir: Path, epochs: Sequence[Mapping[str, Any]], final: Mapping[str, Any] | None, examples: int = 5
) -> list[str]:
    """Markdown lines of the section, or [] when the run is not a translation run."""
    if not any("valid_bleu" in e for e in epochs) and not (final and "test_bleu" in final):
        return []
    lines = ["## Translation quality", ""]
    if final and "test_bleu" in final:
        lines += [
            f"Final model on the test books: BLEU **{_score(final['test_bleu'])}**, chrF "
            f"{_score(final.get('test_chrf'))} (sacrebleu, beam search); validation BLEU "
            f"{_score(final.get('valid_bleu'))} (greedy).",
            "",
        ]
    if epochs:
        lines += [
            "| epoch | phase | valid loss | valid BLEU (greedy) | valid chrF |",
            "|---:|---|---:|---:|---:|",
        ]
        for record in epochs:
            epoch = record.get("epoch")
            lines.append(
                f"| {epoch:.2f} | {record.get('phase', '')} | {_score(record.get('valid_loss'))} | "
                f"{_score(record.get('valid_bleu'))} | {_score(record.get('valid_chrf'))} |"
                if isinstance(epoch, (int, float))
                else "| ? | | | | |"
            )
        lines.append("")
    rows = read_examples(run_dir, examples)
    if rows:
        lines += ["Test translations (first verses of the test books):", ""]
        lines += ["| verse | source | reference | model |", "|---|---|---|---|"]
        for row in rows:
            cells = (row.get(k, "") for k in ("ref", "source", "reference", "hypothesis"))
            lines.append("| " + " | ".join(_escape(c or "") for c in cells) + " |")
        lines.append("")
    return lines
