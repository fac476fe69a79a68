"""Helpers the test folders share: a model with a matrix for each reason one stays dense."""

from __future__ import annotations

from torch import nn


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
