"""check_model_fits through the engine: a model built for another task's data is refused by name
before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import check_smoke_refused


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (
            {"name": "llama", "args": {"hidden_size": 32, "layers": 1, "heads": 2}},
            "model 'llama' is a causal language model but the data is not",
        ),
        (
            {
                "name": "transformer",
                "args": {"d_model": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "ffn_dim": 64},
            },
            "sequence-to-sequence model but the data is a classification",
        ),
    ],
    ids=["llama", "transformer"],
)
def test_token_model_on_images_is_refused(model: dict[str, Any], match: str, tmp_path: Path) -> None:
    recipe = {
        "name": "token-model-on-images",
        "data": {"name": "synthetic", "args": {"n_train": 64, "n_test": 32, "dim": 8}},
        "model": model,
        "method": {"name": "dense"},
        "training": {"epochs": 1, "batch_size": 16, "seed": 0, "threads": 1},
        "output": {"tensorboard": False, "report": False},
    }
    check_smoke_refused(recipe, tmp_path / "run", match)
