"""Assertions shared by the framework tests: masked weights are zero, final counts are the target."""

from __future__ import annotations

import torch

from growprune.methods.base import Sparsifier


def assert_masked_zero(sparsifier: Sparsifier) -> None:
    for target in sparsifier.targets:
        mask = sparsifier.masks[target.name]
        pruned = sparsifier.weight_of(target.name)[~mask]  # dense in either storage
        assert torch.count_nonzero(pruned) == 0, f"{target.name}: pruned weights are not zero"


def assert_at_target(sparsifier: Sparsifier) -> None:
    """Every layer keeps exactly its target count (its sparsity within one element of the target)."""
    assert_masked_zero(sparsifier)
    for name in sparsifier.names:
        kept, numel = sparsifier.mask_set.kept(name), sparsifier.numels[name]
        assert kept == sparsifier.keep_counts[name], name
        assert abs((1 - kept / numel) - sparsifier.layer_sparsity[name]) <= 1 / numel, name
    assert abs(sparsifier.current_sparsity() - sparsifier.sparsity) <= len(sparsifier.names) / sum(
        sparsifier.numels.values()
    )


def assert_same_state(
    model_a: torch.nn.Module, model_b: torch.nn.Module, sp_a: Sparsifier, sp_b: Sparsifier
) -> None:
    """Bitwise equal weights (every state_dict entry), masks, schedule position and history."""
    a, b = model_a.state_dict(), model_b.state_dict()
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different[:3]}"
    assert all(torch.equal(sp_a.masks[n], sp_b.masks[n]) for n in sp_a.names), "masks differ"
    assert sp_a.step_count == sp_b.step_count
    assert sp_a.history == sp_b.history
