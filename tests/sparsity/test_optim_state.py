"""Optimizer state of pruned weights stays zero for every torch.optim optimizer we claim to support."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.sparsity.optim_state import mask_optimizer_state, reset_optimizer_state
from tests.methods import zoo
from tests.methods.harness import train

OPTIMIZERS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw_amsgrad": lambda p: torch.optim.AdamW(p, lr=1e-2, amsgrad=True),
    "nadam": lambda p: torch.optim.NAdam(p, lr=1e-2),
    "radam": lambda p: torch.optim.RAdam(p, lr=1e-2),
    "adamax": lambda p: torch.optim.Adamax(p, lr=1e-2),
    "rmsprop_centered_momentum": lambda p: torch.optim.RMSprop(p, lr=1e-3, centered=True, momentum=0.9),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2),
    "adadelta": lambda p: torch.optim.Adadelta(p),
}


@pytest.mark.parametrize("method", ["set", "cgap"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_per_weight_state_of_pruned_and_regrown_entries_is_zero(name: str, method: str) -> None:
    model = zoo.build("mlp")
    optimizer = OPTIMIZERS[name](list(model.parameters()))
    if method == "set":
        sparsifier: gp.Sparsifier = gp.SET(model, optimizer, sparsity=0.7, end_step=12, update_interval=2)
    else:
        sparsifier = gp.CGaP(
            model, optimizer, sparsity=0.7, partitions=3, steps_per_phase=2, reset_optimizer="changed"
        )
    params = {t.name: t.param for t in sparsifier.targets}
    before = {n: m.clone() for n, m in sparsifier.masks.items()}
    checked = 0

    def check(step: int) -> None:
        nonlocal before, checked
        for n, param in params.items():
            mask = sparsifier.masks[n]
            grown = mask & ~before[n]
            for key, value in optimizer.state[param].items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    if key == "exp_inf":
                        # Adamax stores max(beta2 * u, |g| + eps): a zero gradient leaves eps there,
                        # which acts exactly like fresh state (max(beta2 * eps, |g| + eps) = |g| + eps).
                        eps = optimizer.param_groups[0]["eps"]
                        value = torch.where(value <= eps, torch.zeros_like(value), value)
                    assert (value[~mask] == 0).all(), f"step {step} {n}: {key} of pruned weights"
                    assert (value[grown] == 0).all(), f"step {step} {n}: {key} of regrown weights"
                    checked += 1
            assert (param[~mask] == 0).all() and (param[grown] == 0).all()
        before = {n: m.clone() for n, m in sparsifier.masks.items()}

    train(model, optimizer, sparsifier, zoo.batches("mlp", 12), check)
    assert checked > 0


def test_unknown_per_weight_state_is_refused_not_guessed() -> None:
    model = zoo.build("mlp")
    optimizer = torch.optim.Rprop(model.parameters())  # keeps a per-weight 'step_size' that is not zero-init
    sparsifier = gp.SET(model, optimizer, sparsity=0.7, end_step=12, update_interval=2)
    with pytest.raises(TypeError, match="'step_size'"):
        train(model, optimizer, sparsifier, zoo.batches("mlp", 2))


def test_mask_optimizer_state_zeroes_exactly_the_masked_entries() -> None:
    param = nn.Parameter(torch.randn(4, 5))
    optimizer = torch.optim.Adam([param])
    param.grad = torch.randn(4, 5)
    optimizer.step()
    state = optimizer.state[param]
    avg, sq, step = state["exp_avg"].clone(), state["exp_avg_sq"].clone(), state["step"].clone()
    mask = torch.rand(4, 5, generator=torch.Generator().manual_seed(0)) > 0.5
    mask_optimizer_state(optimizer, [(param, mask)])
    assert torch.equal(state["exp_avg"], avg * mask) and torch.equal(state["exp_avg_sq"], sq * mask)
    assert torch.equal(state["step"], step)  # counters untouched


def test_mask_optimizer_state_without_state_is_a_no_op() -> None:
    param = nn.Parameter(torch.randn(3, 3))
    optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    mask_optimizer_state(optimizer, [(param, torch.zeros(3, 3, dtype=torch.bool))])
    assert len(optimizer.state) == 0


def test_reset_optimizer_state_forgets_everything() -> None:
    param = nn.Parameter(torch.randn(3, 3))
    optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    param.grad = torch.ones(3, 3)
    optimizer.step()
    reset_optimizer_state(optimizer)
    assert len(optimizer.state) == 0


def test_regrown_weight_first_update_has_no_momentum() -> None:
    """C-GaP with reset_optimizer="changed" keeps the state of kept weights, so what a regrown
    weight starts from is decided by the state masking alone: a weight that was dense (and built up
    momentum), was pruned, and grows back one GaP cycle later must take its first step as
    -lr * grad exactly, not with the momentum it had before it was pruned."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False), nn.Linear(6, 3, bias=False)
    )
    lr = 0.1
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sparsifier = gp.CGaP(
        model, optimizer, sparsity=0.5, partitions=3, steps_per_phase=3, rounds=2, reset_optimizer="changed"
    )
    gen = torch.Generator().manual_seed(1)
    weight = model[0].weight
    had_momentum = torch.zeros_like(weight, dtype=torch.bool)
    grown = torch.zeros_like(had_momentum)
    mask_before = sparsifier.masks["0.weight"].clone()
    # Steps 0-2: partition 1 (0.weight) dense; 3-8: pruned while 1.weight, 2.weight grow; step 9 it
    # grows back.
    for step in range(10):
        if step == 9:
            assert sparsifier.phase.dense_partition == 1
            grown = sparsifier.masks["0.weight"] & ~mask_before
            assert (grown & had_momentum).any(), "no regrown weight had built up momentum"
        mask_before = sparsifier.masks["0.weight"].clone()
        if step == 2:  # the last dense step: afterwards this layer is pruned (its state masked)
            had_momentum = optimizer.state[weight]["momentum_buffer"] != 0
        x, y = torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        grad = weight.grad.clone()
        optimizer.step()
        sparsifier.step()
    both = grown & had_momentum
    assert torch.equal(weight.detach()[both], -lr * grad[both])
