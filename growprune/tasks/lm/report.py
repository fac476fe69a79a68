"""The language-modelling part of a run report: perplexity per epoch and a few greedy samples."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from growprune.records import EpochRecord, FinalRecord
from growprune.tasks.markdown import epoch_table, markdown_table, score_cell

SAMPLES_FILE = "samples.json"  # written by LMTask.write_artifacts


def read_samples(run_dir: Path) -> list[dict[str, str]]:
    """The greedy samples the run wrote (none if absent or unreadable)."""
    path = Path(run_dir) / SAMPLES_FILE
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["samples"]
    except (ValueError, KeyError, TypeError, OSError):
        return []
    return [row for row in rows if isinstance(row, dict)]


def lm_lines(run_dir: Path, epochs: Sequence[EpochRecord], final: FinalRecord | None) -> list[str]:
    """Markdown lines of the section, or [] when the run has no perplexity scores."""
    final_scores = final.scores if final is not None else {}
    if not any("valid_ppl" in e.scores for e in epochs) and "test_ppl" not in final_scores:
        return []
    lines = ["## Language modelling", ""]
    if "test_ppl" in final_scores:
        lines += [
            f"Final model on the test books: perplexity **{score_cell(final_scores['test_ppl'])}** "
            f"(loss {score_cell(final_scores.get('test_loss'), '.4f')} nats/token); validation perplexity "
            f"{score_cell(final_scores.get('valid_ppl'))}.",
            "",
        ]
    if epochs:
        lines += epoch_table(
            epochs,
            (
                ("valid loss", "valid_loss", ".4f"),
                ("valid perplexity", "valid_ppl", ".2f"),
                ("valid token accuracy", "valid_acc", ".4f"),
            ),
        )
    rows = read_samples(run_dir)
    if rows:
        lines += ["Greedy samples of the final model (fixed prompts):", ""]
        lines += markdown_table(
            ("prompt", "continuation"),
            "ll",
            (
                [str(row.get("prompt", "")), str(row.get("continuation", "")).replace("\n", " ⏎ ")]
                for row in rows
            ),
        )
    return lines
