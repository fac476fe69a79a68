"""Scores: float32 magnitudes, seeded random scores that do not depend on process or global RNG."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from growprune.seeding import keyed_seed
from growprune.sparsity.scoring import gradient_magnitude, magnitude, random_scores, restrict


def test_keyed_seed_is_stable_across_processes() -> None:
    """Ranks and resumed runs must draw the same masks: no dependence on PYTHONHASHSEED."""
    code = "from growprune.seeding import keyed_seed; print(keyed_seed(3, 'grow', 7, 'fc.weight'))"
    # this process hashes strings with a random PYTHONHASHSEED; the child with a fixed one
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) == keyed_seed(3, "grow", 7, "fc.weight")
    assert 0 <= keyed_seed(3) < 2**63


def test_random_scores_depend_only_on_keys() -> None:
    a = random_scores(torch.Size((5, 7)), torch.device("cpu"), 0, "init", "fc.weight")
    torch.manual_seed(123)
    b = random_scores(torch.Size((5, 7)), torch.device("cpu"), 0, "init", "fc.weight")
    c = random_scores(torch.Size((5, 7)), torch.device("cpu"), 1, "init", "fc.weight")
    d = random_scores(torch.Size((5, 7)), torch.device("cpu"), 0, "init", "fc2.weight")
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)
    assert a.dtype == torch.float32 and ((a >= 0) & (a < 1)).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_magnitude_is_float32(dtype: torch.dtype) -> None:
    w = torch.tensor([[-2.0, 1.0], [0.5, -0.25]], dtype=dtype)
    scores = magnitude(w)
    assert scores.dtype == torch.float32 and torch.equal(scores, w.abs().float())


def test_restrict_puts_disallowed_entries_below_every_allowed_one() -> None:
    scores = torch.tensor([0.0, 0.5, 0.9])
    allowed = torch.tensor([True, False, True])
    out = restrict(scores, allowed)
    assert out[1] < out[0] and out[1] < out[2] and torch.equal(out[allowed], scores[allowed])


def test_gradient_magnitude_without_gradient_names_the_layer() -> None:
    with pytest.raises(RuntimeError, match="'fc.weight'"):
        gradient_magnitude(None, "fc.weight")
    assert torch.equal(gradient_magnitude(torch.tensor([-1.0, 2.0]), "x"), torch.tensor([1.0, 2.0]))
