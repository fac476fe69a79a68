"""Corpus-level translation quality: BLEU and chrF as sacrebleu computes them.

sacrebleu's defaults (13a tokenisation for BLEU, chrF with character 6-grams and beta 2) are
what papers report and what its signature strings describe, so the numbers are comparable with
published ones; nothing here re-implements the metrics. sacrebleu is imported on first use so
that decoding works without it installed.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["translation_scores"]


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """{"bleu": corpus BLEU, "chrf": corpus chrF}, both on a 0-100 scale, one reference per line.

    Raises:
        ValueError: the lists are empty or differ in length.
        ImportError: sacrebleu is not installed.
    """
    if len(hypotheses) != len(references):
        raise ValueError(
            f"hypotheses ({len(hypotheses)}) and references ({len(references)}) must have the same length"
        )
    if not hypotheses:
        raise ValueError("hypotheses and references are empty; score at least one sentence")
    try:
        import sacrebleu
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "translation_scores needs sacrebleu; install it with `pip install sacrebleu`"
        ) from err
    hyps, refs = list(hypotheses), [list(references)]
    return {
        "bleu": float(sacrebleu.corpus_bleu(hyps, refs).score),
        "chrf": float(sacrebleu.corpus_chrf(hyps, refs).score),
    }
