"""training.precision (bf16 autocast) and training.channels_last: the forward pass runs in bf16 /
the conv weights are channels-last, while weights, gradients, masks and optimizer state stay fp32
and every masked weight and its momentum stay exactly zero."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from growprune.train.engine import Trainer, incompatible_changes
from growprune.train.recipe import RecipeError, recipe_to_dict, validate_recipe
from tests.helpers import gap_method


def recipe(device: str = "cpu", **training: Any) -> dict[str, Any]:
    return {
        "name": "precision",
        "data": {
            "name": "synthetic_images",
            "args": {"n_train": 256, "n_test": 64, "height": 12, "width": 12},
        },
        "model": {"name": "small_cnn", "args": {"width": 4}},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        # C-GaP: masks change (prune + grow) several times within the run
        "method": gap_method("cgap", partitions=2, epochs_per_phase=0.5, finetune_epochs=0.5),
        "training": {"batch_size": 32, "seed": 0, "threads": 1, "device": device, **training},
        "output": {"tensorboard": False, "report": False, "checkpoint_every_minutes": None},
    }


def run(tmp_path: Path, device: str = "cpu", **training: Any) -> tuple[Trainer, dict[str, set[torch.dtype]]]:
    """Train the recipe; record the dtypes the convolutions computed in, training and evaluating."""
    trainer = Trainer(validate_recipe(recipe(device, **training)), tmp_path / "run", progress=False)
    seen: dict[str, set[torch.dtype]] = {"train": set(), "eval": set()}

    def record(module: nn.Module, args: Any, output: torch.Tensor) -> None:
        del args
        seen["train" if module.training else "eval"].add(output.dtype)

    for module in trainer.model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            module.register_forward_hook(record)
    trainer.run()
    return trainer, seen


def check_fp32_state_and_masks(trainer: Trainer) -> None:
    masks = trainer.sparsifier.masks
    assert masks
    for name, param in trainer.model.named_parameters():
        assert param.dtype == torch.float32, name
        state = trainer.optimizer.state.get(param, {})
        if "momentum_buffer" in state:
            assert state["momentum_buffer"].dtype == torch.float32, name
        if name in masks:
            mask = masks[name]
            assert torch.all(param[~mask] == 0), name
            if "momentum_buffer" in state:
                assert torch.all(state["momentum_buffer"][~mask] == 0), name
    assert abs(trainer.sparsifier.current_sparsity() - 0.8) < 0.01


def test_default_is_fp32_contiguous(tmp_path: Path) -> None:
    trainer, seen = run(tmp_path)
    assert seen == {"train": {torch.float32}, "eval": {torch.float32}}
    conv = next(m for m in trainer.model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous()


def test_bf16_autocast_trains_and_evaluates_in_bf16(tmp_path: Path) -> None:
    trainer, seen = run(tmp_path, precision="bf16")
    assert seen == {"train": {torch.bfloat16}, "eval": {torch.bfloat16}}
    check_fp32_state_and_masks(trainer)


def test_channels_last_weights(tmp_path: Path) -> None:
    trainer, _ = run(tmp_path, channels_last=True)
    convs = [m for m in trainer.model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1]
    assert convs
    for conv in convs:  # still channels-last after training (in-place updates, masking)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()
        momentum = trainer.optimizer.state[conv.weight]["momentum_buffer"]
        assert momentum.shape == conv.weight.shape
    check_fp32_state_and_masks(trainer)


def test_precision_is_validated_and_fixed_for_a_resume() -> None:
    with pytest.raises(RecipeError, match="training.precision"):
        validate_recipe(recipe(precision="fp16"))
    before = recipe_to_dict(validate_recipe(recipe()))
    after = recipe_to_dict(validate_recipe(recipe(precision="bf16", channels_last=True)))
    assert incompatible_changes(before, after) == ["training.channels_last", "training.precision"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_channels_last_on_cuda(tmp_path: Path) -> None:
    trainer, seen = run(tmp_path, "cuda", precision="bf16", channels_last=True)
    assert seen == {"train": {torch.bfloat16}, "eval": {torch.bfloat16}}
    conv = next(m for m in trainer.model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_cuda and conv.weight.is_contiguous(memory_format=torch.channels_last)
    check_fp32_state_and_masks(trainer)
