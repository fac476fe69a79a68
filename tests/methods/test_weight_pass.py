"""The post-step weight masking pass is skipped only where it provably changes nothing.

For SGD/Adam/AdamW the gradient masking before the step already keeps pruned weights at 0, so the
second pass is skipped (a measured ~5% of an MLP step); these tests pin down both that it is
skipped and the cases where skipping would be wrong.
"""

from __future__ import annotations

import pytest
import torch

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import make_optimizer, train


def _count_weight_passes(monkeypatch: pytest.MonkeyPatch, sparsifier: gp.Sparsifier) -> list[int]:
    calls: list[int] = []
    original = sparsifier.mask_set.apply_to_weights

    def counted() -> None:
        calls.append(sparsifier.step_count)
        original()

    monkeypatch.setattr(sparsifier.mask_set, "apply_to_weights", counted)
    return calls


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_zero_preserving_optimizers_skip_the_second_pass(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = zoo.build("mlp")
    if kind == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    else:
        optimizer = make_optimizer(kind, model)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.7)
    calls = _count_weight_passes(monkeypatch, sparsifier)
    train(model, optimizer, sparsifier, zoo.batches("mlp", 5))
    assert calls == []
    for t in sparsifier.targets:
        assert (t.param[~sparsifier.masks[t.name]] == 0).all()


def test_other_optimizers_keep_the_second_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    model = zoo.build("mlp")
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.7)
    calls = _count_weight_passes(monkeypatch, sparsifier)
    train(model, optimizer, sparsifier, zoo.batches("mlp", 3))
    assert len(calls) == 3


def test_momentum_from_dense_training_cannot_move_pruned_weights() -> None:
    """State that existed before the sparsifier was attached is zeroed on pruned entries."""
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    dense = gp.get_method("dense")(model, optimizer)
    train(model, optimizer, dense, zoo.batches("mlp", 3))
    dense.remove()
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.8)
    train(model, optimizer, sparsifier, zoo.batches("mlp", 3))
    for t in sparsifier.targets:
        assert (t.param[~sparsifier.masks[t.name]] == 0).all()


def test_loading_other_masks_through_the_model_state_dict_is_noticed() -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.5)
    train(model, optimizer, sparsifier, zoo.batches("mlp", 2))
    other = zoo.build("mlp", seed=5)
    other_sparsifier = gp.OneShot(other, make_optimizer("sgd", other), sparsity=0.5, seed=3)
    with torch.no_grad():  # different masks on the same weights: previously kept entries now pruned
        for t in other_sparsifier.targets:
            t.param.copy_(dict(model.named_parameters())[t.name] + 1.0)
    state = {**model.state_dict(), **{k: v for k, v in other.state_dict().items() if k.endswith("_mask")}}
    model.load_state_dict(state)
    train(model, optimizer, sparsifier, zoo.batches("mlp", 1))
    for t in sparsifier.targets:
        assert (t.param[~sparsifier.masks[t.name]] == 0).all()
