"""Helpers the test folders share: the registries' error checks, a model with a matrix for each
reason one stays dense."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from torch import nn


def check_unknown_name(build: Callable[..., Any], kind: str, unknown: str, known: Sequence[str]) -> None:
    """A registry's `build(unknown)`: a ValueError naming the unknown `kind`, listing every known name."""
    with pytest.raises(ValueError, match=f"unknown {kind} '{unknown}'") as err:
        build(unknown)
    for name in known:
        assert name in str(err.value)


def check_misspelled_keyword(build: Callable[..., Any], name: str, typo: str, accepted: str) -> None:
    """A registry's `build(name, typo=...)` is a TypeError naming the misspelled keyword and listing
    the accepted ones (`accepted` among them)."""
    with pytest.raises(TypeError, match=typo) as err:
        build(name, **{typo: 2})
    assert accepted in str(err.value)


class Mixed(nn.Module):
    """One weight matrix for each reason a matrix stays dense (an embedding, an LSTM, a transposed
    convolution) next to a Linear layer `fc`: 8 -> 8 and a second one `fc2` 8 -> 4, or without
    `fc2`, `fc` alone 8 -> 4."""

    def __init__(self, fc2: bool = True) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.lstm = nn.LSTM(8, 8)
        self.up = nn.ConvTranspose1d(4, 4, 3)
        self.fc = nn.Linear(8, 8 if fc2 else 4)
        if fc2:
            self.fc2 = nn.Linear(8, 4)
