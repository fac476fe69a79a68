"""Export straight from a real (tiny) training run: the engine's checkpoints and data-derived args."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import growprune as gp
from growprune.train.engine import Trainer
from growprune.train.recipe import validate_recipe


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (
            {"name": "mlp", "args": {"hidden": [32]}},
            {"name": "synthetic", "args": {"n_train": 128, "n_test": 64}},
        ),
        (
            {"name": "small_cnn", "args": {"width": 4}},
            {"name": "synthetic_images", "args": {"n_train": 64, "n_test": 32}},
        ),
    ],
    ids=["mlp", "small_cnn"],
)
def test_export_a_trained_run(tmp_path: Path, model: dict, data: dict) -> None:
    recipe = validate_recipe(
        {
            "name": "export-test",
            "data": data,
            "model": model,
            "optimizer": {"name": "sgd", "lr": 0.05},
            "method": {"name": "oneshot", "sparsity": 0.9},
            "training": {"epochs": 1, "batch_size": 32, "seed": 0, "threads": 1},
            "output": {"tensorboard": False, "report": False},
        }
    )
    run = tmp_path / "run"
    trainer = Trainer(recipe, run, progress=False)
    trainer.run()
    out = tmp_path / "m.safetensors"
    summary = gp.export_model(run, out)
    assert summary.source.endswith("final.pt") and summary.sparsity > 0.85
    loaded = gp.load(out)
    trained = {k: v for k, v in trainer.model.state_dict().items() if not k.endswith("_mask")}
    assert set(loaded.state_dict()) == set(trained)
    for key, value in trained.items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = next(iter(trainer.task.test_loader))[0]
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), trainer.model(x))
