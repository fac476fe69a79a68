"""A sparsity that prunes every weight of a layer cuts the network: refused unless asked for."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from growprune.methods import METHODS, OneShot, get_method
from tests.methods.harness import SCHEDULES


def model_and_optimizer() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 3))
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


@pytest.mark.parametrize("sparsity", [0.99999, 0.99])
def test_a_layer_left_without_weights_is_refused_naming_it(sparsity: float) -> None:
    model, optimizer = model_and_optimizer()
    # 32 weights in '0.weight': at 0.99 it keeps round(0.32) = 0 of them; the 512-weight layer keeps 5.
    with pytest.raises(
        ValueError, match=r"prunes every one of the 32 weights of '0\.weight'.*allow_empty_layers"
    ):
        OneShot(model, optimizer, sparsity=sparsity)
    assert not any(name.endswith("_mask") for name in model.state_dict())  # nothing was touched


def test_allow_empty_layers_opts_in() -> None:
    model, optimizer = model_and_optimizer()
    sparsifier = OneShot(model, optimizer, sparsity=0.99, allow_empty_layers=True)
    assert int(sparsifier.masks["0.weight"].sum()) == 0
    assert int(sparsifier.masks["2.weight"].sum()) == 5


PGAP = {"partitions": 2, "steps_per_phase": 3, "rounds": 1}


@pytest.mark.parametrize("method", [*(m for m in SCHEDULES if m != "dense"), "pgap"])
def test_every_method_checks(method: str) -> None:
    """The check is in the base class, so every method has it."""
    model, optimizer = model_and_optimizer()
    with pytest.raises(ValueError, match="prunes every one"):
        get_method(method)(
            model, optimizer, sparsity=0.99, **(PGAP if method == "pgap" else SCHEDULES[method])
        )


def test_the_methods_here_are_all_the_methods() -> None:
    assert {*SCHEDULES, "pgap"} == set(METHODS)
