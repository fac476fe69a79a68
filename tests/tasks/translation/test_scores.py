"""translation_scores: sacrebleu's corpus BLEU and chrF, and the argument checks."""

from __future__ import annotations

import pytest

from growprune.tasks.translation.scores import translation_scores

REFERENCES = [
    "the cat sat on the mat next to the door .",
    "we will meet again in the old town tomorrow morning .",
    "this sentence is long enough for four-gram matches .",
]


def test_perfect_hypotheses_score_100() -> None:
    scores = translation_scores(REFERENCES, REFERENCES)
    assert set(scores) == {"bleu", "chrf"}
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)


def test_imperfect_hypotheses_score_between() -> None:
    hypotheses = ["the cat sat on a mat by the door .", "we meet tomorrow .", "something else entirely"]
    scores = translation_scores(hypotheses, REFERENCES)
    assert 0.0 < scores["bleu"] < 100.0 and 0.0 < scores["chrf"] < 100.0
    assert all(isinstance(v, float) for v in scores.values())


def test_bad_lists_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        translation_scores(REFERENCES[:2], REFERENCES)
    with pytest.raises(ValueError, match="empty"):
        translation_scores([], [])
