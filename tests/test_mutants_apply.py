"""tests/mutation.py plants each bug by replacing text that must stand exactly once in its file: a
refactor that rewrites those lines would silently turn the mutant into a no-op (two did, once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutation import MUTANTS, REPO


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_every_mutant_still_applies(mutant: object) -> None:
    text = (REPO / mutant.file).read_text()  # type: ignore[attr-defined]
    assert text.count(mutant.old) == 1, f"{mutant.name}: its text is not in {mutant.file} exactly once"  # type: ignore[attr-defined]
    for argument in mutant.tests:  # type: ignore[attr-defined]
        if argument.startswith("tests/"):
            assert Path(REPO / argument.split("::")[0]).exists(), f"{mutant.name}: {argument} is gone"  # type: ignore[attr-defined]
