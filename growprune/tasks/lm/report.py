"""The language-modelling part of a run report: perplexity per epoch and a few greedy samples."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from growprune.records import EpochRecord, FinalRecord
from growprune.tasks.markdown import markdown_table

SAMPLES_FILE = "samples.json"  # written by LMTask.write_artifacts


def _score(value: float | None, fmt: str = ".2f") -> str:
    return format(value, fmt) if value is not None else "n/a"


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
            f"Final model on the test books: perplexity **{_score(final_scores['test_ppl'])}** "
            f"(loss {_score(final_scores.get('test_loss'), '.4f')} nats/token); validation perplexity "
            f"{_score(final_scores.get('valid_ppl'))}.",
            "",
        ]
    if epochs:
        header = ("epoch", "phase", "valid loss", "valid perplexity", "valid token accuracy")
        cells = (
            [
                f"{r.epoch:.2f}",
                str(r.phase) if r.phase else "",
                _score(r.scores.get("valid_loss"), ".4f"),
                _score(r.scores.get("valid_ppl")),
                _score(r.scores.get("valid_acc"), ".4f"),
            ]
            for r in epochs
        )
        lines += markdown_table(header, "rlrrr", cells)
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
