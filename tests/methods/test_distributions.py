"""Distributions end to end: the requested overall sparsity is what the masks and weights end up at."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import STEPS, VARIANTS, make_optimizer, make_sparsifier, train


def mixed_model() -> nn.Module:
    """About 275k prunable weights in layers of very different shapes, so ERK differs from uniform."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3),
        nn.Conv2d(16, 64, 3),
        nn.Flatten(),
        nn.Linear(1024, 256),
        nn.Linear(256, 10),
    )


EXPLICIT = {"0.*": 0.5, "3.*": 0.95}


def reference_erk(shapes: list[tuple[int, ...]], sparsity: float) -> list[float]:
    """ERK written out from the paper (Evci et al. 2020, "Rigging the Lottery", sec. 3), not with
    the library's code: layer l keeps a share eps * sum(dims_l) / prod(dims_l) of its weights,
    capped at 1 (such a layer stays dense), and eps is the one value for which the kept weights
    add up to (1 - sparsity) * total. Solved here by bisection on eps."""
    numels = [math.prod(s) for s in shapes]
    raw = [sum(s) / math.prod(s) for s in shapes]
    budget = (1 - sparsity) * sum(numels)

    def kept(eps: float) -> float:
        return sum(min(1.0, eps * r) * n for r, n in zip(raw, numels))

    low, high = 0.0, 1.0
    while kept(high) < budget:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if kept(middle) < budget else (low, middle)
    return [1.0 - min(1.0, high * r) for r in raw]


def test_reference_erk_by_hand() -> None:
    """Two layers, 4x4 and 100x100, at 50%: the small one's density 8/16 * eps would exceed 1
    (eps = 5008/208 = 24.08), so it stays dense and the large one keeps the other 4992 of its
    10000 weights: sparsity 0.5008."""
    small, large = reference_erk([(4, 4), (100, 100)], 0.5)
    assert small == pytest.approx(0.0, abs=1e-9) and large == pytest.approx(0.5008, abs=1e-9)


def expected_layers(distribution: str, sparsity: float, sparsifier: gp.Sparsifier) -> dict[str, float] | None:
    shapes = [tuple(t.shape) for t in sparsifier.targets]
    if distribution == "uniform":
        return dict.fromkeys(sparsifier.names, sparsity)
    if distribution == "erk":
        return dict(zip(sparsifier.names, reference_erk(shapes, sparsity)))
    if distribution == "explicit":
        return {"0.weight": 0.5, "1.weight": sparsity, "3.weight": 0.95, "4.weight": sparsity}
    return None  # global: only the total is fixed


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.95])
@pytest.mark.parametrize("distribution", ["uniform", "erk", "global", "explicit"])
def test_oneshot_overall_and_per_layer(distribution: str, sparsity: float) -> None:
    model = mixed_model()
    spec = EXPLICIT if distribution == "explicit" else distribution
    sparsifier = gp.OneShot(model, make_optimizer("sgd", model), sparsity=sparsity, distribution=spec)
    numels = sparsifier.numels
    total = sum(numels.values())
    assert total > 250_000
    layers = expected_layers(distribution, sparsity, sparsifier)
    requested = sparsity if layers is None else sum(layers[n] * numels[n] for n in numels) / total
    report = gp.sparsity_report(model)
    assert sparsifier.current_sparsity() == pytest.approx(requested, abs=1e-3)
    assert (
        abs(sparsifier.current_sparsity() * total - requested * total) <= 0.5 + 1e-6
    )  # exact to the element
    mask_zeros = sum(int((~m).sum()) for m in sparsifier.masks.values())
    assert report.zeros >= mask_zeros and report.overall == pytest.approx(requested, abs=1e-3)
    if layers is not None:
        for name, layer_sparsity in layers.items():
            zeros = int((~sparsifier.masks[name]).sum())
            assert abs(zeros - layer_sparsity * numels[name]) < 1.0, name
    if distribution == "erk":
        assert len({round(s, 6) for s in layers.values()}) > 1  # really non-uniform
    if distribution == "global":
        assert mask_zeros == round(sparsity * total)
        shares = {n: int(sparsifier.masks[n].sum()) / numels[n] for n in numels}  # layers differ
        assert len({round(v, 3) for v in shares.values()}) > 1


def test_global_ranks_all_layers_together() -> None:
    model = mixed_model()
    with torch.no_grad():
        model[3].weight.mul_(10.0)  # one layer with much larger weights keeps more of them
    before = {n: p.detach().abs().clone() for n, p in model.named_parameters()}
    sparsifier = gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.8, distribution="global")
    kept = torch.cat([before[n][sparsifier.masks[n]] for n in sparsifier.names])
    pruned = torch.cat([before[n][~sparsifier.masks[n]] for n in sparsifier.names])
    assert kept.min() >= pruned.max()
    assert int(sparsifier.masks["3.weight"].sum()) / sparsifier.numels["3.weight"] > 0.2


@pytest.mark.parametrize("distribution", ["uniform", "erk", "global", "explicit"])
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "dense"])
def test_every_method_ends_at_the_requested_sparsity(variant: str, distribution: str) -> None:
    model = zoo.build("mlp")
    spec = {"net.0.*": 0.9} if distribution == "explicit" else distribution
    optimizer = make_optimizer("sgd", model)
    sparsifier = make_sparsifier(variant, model, optimizer, sparsity=0.8, distribution=spec)
    train(model, optimizer, sparsifier, zoo.batches("mlp", STEPS))
    numels = sparsifier.numels
    total = sum(numels.values())
    layer = dict.fromkeys(sparsifier.names, 0.8)
    if distribution == "erk":
        layer = dict(zip(sparsifier.names, reference_erk([tuple(t.shape) for t in sparsifier.targets], 0.8)))
    elif distribution == "explicit":
        layer["net.0.weight"] = 0.9
    requested = sum(layer[n] * numels[n] for n in numels) / total
    zeros = sum(int((~m).sum()) for m in sparsifier.masks.values())
    assert abs(zeros - requested * total) <= 0.5 + 1e-6
    assert gp.sparsity_report(model).zeros >= zeros
    if distribution != "global":
        for name in sparsifier.names:
            assert abs(int((~sparsifier.masks[name]).sum()) - layer[name] * numels[name]) < 1.0
    assert math.isclose(sum(sparsifier.keep_counts.values()), total - zeros)
