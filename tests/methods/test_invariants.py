"""Invariants 1-4 and 7 of docs/architecture.md, for every method on every kind of model.

The expected per-layer sparsity at each step is derived here from the schedule arguments alone
(the cubic GMP ramp, the C-GaP rotation), not read back from the sparsifier, so a schedule that
drifts from its definition fails even if it is self-consistent.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import (
    NOISY,
    OPTIMIZERS,
    STEPS,
    VARIANTS,
    make_optimizer,
    make_sparsifier,
    params_by_name,
    snapshot_masks,
    train,
)

SPARSITY = 0.75
STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq")


def gmp_sparsity(step: int, start: int, end: int, frequency: int, final: float) -> float:
    """Sparsity after the last GMP prune at or before `step` (Zhu & Gupta's cubic ramp)."""
    if step < start:
        return 0.0
    prunes = [t for t in range(start, end + 1) if (t - start) % frequency == 0 or t == end]
    last = max(t for t in prunes if t <= step)
    progress = (last - start) / (end - start)
    return final * (1.0 - (1.0 - progress) ** 3)


def expected_layer_sparsity(variant: str, sparsifier: gp.Sparsifier, step: int) -> dict[str, float]:
    """What each layer's sparsity must be after `step` optimizer steps, from the schedule alone."""
    method, kw = VARIANTS[variant]
    names = sparsifier.names
    if method == "dense":
        return dict.fromkeys(names, 0.0)
    if method == "oneshot":
        return dict.fromkeys(names, SPARSITY if step >= kw["prune_step"] else 0.0)
    if method == "admm":
        return dict.fromkeys(names, SPARSITY if step >= kw["pretrain_steps"] + kw["admm_steps"] else 0.0)
    if method == "gmp":
        return dict.fromkeys(
            names, gmp_sparsity(step, kw["start_step"], kw["end_step"], kw["frequency"], SPARSITY)
        )
    if method in ("set", "rigl"):
        return dict.fromkeys(names, SPARSITY)
    if method == "pgap":  # this process is worker 0 of every round: its partition is dense
        in_rounds = step < kw["rounds"] * kw["steps_per_phase"]
        dense = set(sparsifier.partitions[sparsifier.worker]) if in_rounds else set()
        return {n: 0.0 if n in dense else SPARSITY for n in names}
    assert method == "cgap"
    k, spp = kw["partitions"], kw["steps_per_phase"]
    gap_step = step // spp
    dense = set(sparsifier.partitions[gap_step % k]) if gap_step < kw["rounds"] * k else set()
    return {n: 0.0 if n in dense else SPARSITY for n in names}


def check_weights_and_state(
    sparsifier: gp.Sparsifier, optimizer: torch.optim.Optimizer, before: dict[str, torch.Tensor]
) -> None:
    """Invariants 1 and 2: masked weights and their optimizer state are exactly zero; weights that
    were just (re)grown start at zero with zero state."""
    for name, param in params_by_name(sparsifier).items():
        mask = sparsifier.masks[name]
        assert mask.dtype == torch.bool and mask.shape == param.shape
        assert torch.equal(param.detach()[~mask], torch.zeros_like(param[~mask])), (
            f"{name}: masked weight != 0"
        )
        grown = mask & ~before[name]
        if grown.any():
            assert (param.detach()[grown] == 0).all(), f"{name}: regrown weight does not start at 0"
        state = optimizer.state.get(param, {})
        for key in STATE_KEYS:
            if key in state:
                value = state[key]
                assert (value[~mask] == 0).all(), f"{name}: optimizer state '{key}' of pruned weights != 0"
                assert (value[grown] == 0).all(), f"{name}: regrown weight inherits '{key}' (ghost momentum)"


def check_counts(variant: str, sparsifier: gp.Sparsifier, step: int) -> None:
    """Invariant 3: each layer keeps its target count within one element."""
    expected = expected_layer_sparsity(variant, sparsifier, step)
    for name in sparsifier.names:
        numel = sparsifier.numels[name]
        kept = int(sparsifier.masks[name].sum())
        ideal = (1.0 - expected[name]) * numel
        assert abs(kept - ideal) < 1.0, f"step {step} {name}: kept {kept}, target {ideal:.2f} of {numel}"
        if expected[name] == SPARSITY:
            assert kept == sparsifier.keep_counts[name]


def check_cgap_partitions(sparsifier: gp.CGaP, step: int) -> None:
    """Invariant 4: between start and final prune exactly one partition is dense, the rest sparse."""
    kw = VARIANTS["cgap"][1]
    dense = [
        k
        for k, part in enumerate(sparsifier.partitions)
        if all(bool(sparsifier.masks[n].all()) for n in part)
    ]
    at_target = [
        k
        for k, part in enumerate(sparsifier.partitions)
        if all(int(sparsifier.masks[n].sum()) == sparsifier.keep_counts[n] for n in part)
    ]
    if step < kw["rounds"] * kw["partitions"] * kw["steps_per_phase"]:
        assert len(dense) == 1, f"step {step}: dense partitions {dense}"
        assert sorted(dense + at_target) == list(range(sparsifier.num_partitions))
        assert sparsifier.phase.dense_partition == dense[0] + 1
    else:
        assert dense == [] and len(at_target) == sparsifier.num_partitions


def check_report(model: nn.Module, sparsifier: gp.Sparsifier) -> None:
    """Invariant 7: the report lists every target and an overall figure counted from the weights."""
    report = gp.sparsity_report(model)
    assert [layer.name for layer in report.layers] == sparsifier.names
    params = params_by_name(sparsifier)
    for layer in report.layers:
        param = params[layer.name]
        assert layer.numel == param.numel() and layer.shape == tuple(param.shape)
        assert layer.zeros == int((param == 0).sum())
        assert layer.zeros >= int((~sparsifier.masks[layer.name]).sum())
    assert report.numel == sum(sparsifier.numels.values())
    assert report.overall == pytest.approx(report.zeros / report.numel)
    assert report.overall >= sparsifier.current_sparsity() - 1e-12
    assert "overall" in str(report) and "overall" in report.to_markdown()


@pytest.mark.parametrize("optimizer_kind", [*OPTIMIZERS, NOISY])
@pytest.mark.parametrize("case", list(zoo.CASES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_invariants_after_every_step(variant: str, case: str, optimizer_kind: str) -> None:
    model = zoo.build(case)
    optimizer = make_optimizer(optimizer_kind, model)
    sparsifier = make_sparsifier(variant, model, optimizer, **zoo.CASES[case].kwargs)
    before = snapshot_masks(sparsifier)
    check_weights_and_state(sparsifier, optimizer, before)
    check_counts(variant, sparsifier, 0)

    def after_step(step: int) -> None:
        nonlocal before
        check_weights_and_state(sparsifier, optimizer, before)
        check_counts(variant, sparsifier, step)
        if isinstance(sparsifier, gp.CGaP):
            check_cgap_partitions(sparsifier, step)
        before = snapshot_masks(sparsifier)

    train(model, optimizer, sparsifier, zoo.batches(case, STEPS), after_step)
    assert sparsifier.step_count == STEPS
    check_report(model, sparsifier)
    if variant != "dense":
        assert sparsifier.current_sparsity() == pytest.approx(
            SPARSITY, abs=0.5 / sum(sparsifier.numels.values())
        )
    if case == "tied":
        assert model.out.weight is model.emb.weight and model.mix_b.weight is model.mix_a.weight


def test_schedules_change_masks() -> None:
    """Guard for the test above: every schedule really moves masks within STEPS steps."""
    model = zoo.build("mlp")
    for variant in VARIANTS:
        if variant == "dense":
            continue
        model = zoo.build("mlp")
        optimizer = make_optimizer("sgd", model)
        sparsifier = make_sparsifier(variant, model, optimizer)
        initial = snapshot_masks(sparsifier)
        train(model, optimizer, sparsifier, zoo.batches("mlp", STEPS))
        final = sparsifier.masks
        assert any(not torch.equal(initial[n], final[n]) for n in final), variant
        assert sparsifier.done, variant


def run_masks(variant: str, case: str, seed: int, steps: int = STEPS) -> list[dict[str, torch.Tensor]]:
    """Masks after construction and after every step of an independent run."""
    model = zoo.build(case, seed=7)
    optimizer = make_optimizer("sgd", model)
    sparsifier = make_sparsifier(variant, model, optimizer, seed=seed, **zoo.CASES[case].kwargs)
    history = [snapshot_masks(sparsifier)]
    train(
        model,
        optimizer,
        sparsifier,
        zoo.batches(case, steps),
        lambda _: history.append(snapshot_masks(sparsifier)),
    )
    return history


@pytest.mark.parametrize("case", list(zoo.CASES))
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "dense"])
def test_same_seed_same_masks(variant: str, case: str) -> None:
    first, second = run_masks(variant, case, seed=3), run_masks(variant, case, seed=3)
    for step, (a, b) in enumerate(zip(first, second)):
        for name in a:
            assert torch.equal(a[name], b[name]), f"step {step} {name}"


@pytest.mark.parametrize("case", list(zoo.CASES))
@pytest.mark.parametrize("variant", ["set", "rigl", "cgap"])
def test_different_seed_different_random_masks(variant: str, case: str) -> None:
    """Methods that draw random masks draw different ones for a different seed (same weights)."""
    a, b = run_masks(variant, case, seed=0, steps=0)[0], run_masks(variant, case, seed=1, steps=0)[0]
    sparse = [n for n in a if not bool(a[n].all())]
    assert sparse and all(not torch.equal(a[n], b[n]) for n in sparse if a[n].numel() > 8)


def test_random_masks_do_not_depend_on_global_rng() -> None:
    """Masks come from the sparsifier seed only: the global RNG state must not leak in."""
    masks = []
    for global_seed in (0, 99):
        model = zoo.build("mlp", seed=5)
        optimizer = make_optimizer("sgd", model)
        torch.manual_seed(global_seed)
        masks.append(make_sparsifier("set", model, optimizer, seed=2).masks)
    assert all(torch.equal(masks[0][n], masks[1][n]) for n in masks[0])


@pytest.mark.parametrize("case", list(zoo.CASES))
def test_report_lists_targets_on_a_fresh_sparsifier(case: str) -> None:
    model = zoo.build(case)
    sparsifier = make_sparsifier("oneshot", model, make_optimizer("sgd", model), **zoo.CASES[case].kwargs)
    check_report(model, sparsifier)
    assert sparsifier.names == [t.name for t in gp.find_targets(model, zoo.CASES[case].kwargs.get("targets"))]


@pytest.mark.parametrize(
    ("targets", "named"),
    [
        (["*.bias"], ".bias"),  # 1-D: cannot be pruned
        (["net.0.weight", "net.9.weight"], "net.9.weight"),  # matches nothing
        ("encoder.*", "encoder.*"),  # matches nothing
    ],
)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_unhandled_target_is_an_error_naming_it(variant: str, targets: list[str] | str, named: str) -> None:
    model = zoo.build("mlp")
    with pytest.raises(ValueError, match=named.replace(".", r"\.").replace("*", r"\*")):
        make_sparsifier(variant, model, make_optimizer("sgd", model), targets=targets)
    assert not any(name.endswith("_mask") for name, _ in model.named_buffers()), "failed init left masks"


def test_norm_scales_cannot_be_requested() -> None:
    model = zoo.build("cnn_bn")
    with pytest.raises(ValueError, match=r"features\.1\.weight"):
        gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.5, targets=["features.*.weight"])


def test_exclude_pattern_matching_nothing_is_an_error() -> None:
    model = zoo.build("mlp")
    with pytest.raises(ValueError, match="nett"):
        gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.5, exclude="nett.*")


def test_second_sparsifier_on_the_same_model_is_an_error() -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    first = gp.OneShot(model, optimizer, sparsity=0.5)
    with pytest.raises(ValueError, match="net.0.weight"):
        gp.OneShot(model, optimizer, sparsity=0.5)
    first.remove()
    gp.OneShot(model, optimizer, sparsity=0.5)


LOW_PRECISION = [torch.float16, torch.bfloat16]


def train_checking_each_step(
    variant: str,
    case: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    autocast: torch.dtype | None = None,
) -> gp.Sparsifier:
    """Attach `variant` and train `case` for STEPS steps, checking invariants 1 and 2 (masked weights
    and optimizer state, per-layer counts) after every step; the sparsifier."""
    sparsifier = make_sparsifier(variant, model, optimizer, **zoo.CASES[case].kwargs)
    before = snapshot_masks(sparsifier)

    def after_step(step: int) -> None:
        nonlocal before
        check_weights_and_state(sparsifier, optimizer, before)
        check_counts(variant, sparsifier, step)
        before = snapshot_masks(sparsifier)

    train(model, optimizer, sparsifier, zoo.batches(case, STEPS), after_step, autocast)
    return sparsifier


@pytest.mark.parametrize("optimizer_kind", OPTIMIZERS)
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("case", list(zoo.CASES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_low_precision_parameters_stay_masked(
    variant: str, case: str, dtype: torch.dtype, optimizer_kind: str
) -> None:
    """Invariant 1 for fp16/bf16 parameters (the reference code left fp16 copies unmasked)."""
    model = zoo.build(case).to(dtype)
    # eps=1e-8 underflows to 0 in fp16, and then Adam divides 0 by 0 even without any sparsity.
    extra = {"eps": 1e-4} if optimizer_kind == "adam" else {}
    optimizer = make_optimizer(optimizer_kind, model, **extra)
    sparsifier = train_checking_each_step(variant, case, model, optimizer)
    assert all(t.param.dtype == dtype for t in sparsifier.targets)
    check_report(model, sparsifier)


@pytest.mark.parametrize("case", ["cnn_bn", "transformer", "conv1d_depthwise"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_masked_under_bf16_autocast(variant: str, case: str) -> None:
    model = zoo.build(case)
    optimizer = make_optimizer("adam", model)
    sparsifier = train_checking_each_step(variant, case, model, optimizer, autocast=torch.bfloat16)
    check_report(model, sparsifier)


def test_model_moved_to_low_precision_after_construction_stays_masked() -> None:
    """model.half() after the sparsifier exists: the cached same-dtype masks must follow."""
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    sparsifier = make_sparsifier("set", model, optimizer)
    train(model, optimizer, sparsifier, zoo.batches("mlp", 5))
    model.to(torch.bfloat16)
    before = snapshot_masks(sparsifier)

    def after_step(step: int) -> None:
        nonlocal before
        check_weights_and_state(sparsifier, optimizer, before)
        before = snapshot_masks(sparsifier)

    train(model, optimizer, sparsifier, zoo.batches("mlp", 15, seed=5), after_step)
    assert sparsifier.current_sparsity() == pytest.approx(SPARSITY, abs=1e-3)


def test_all_methods_are_covered() -> None:
    """Every registered method is in the grids (P-GaP as the one worker of its process): a new
    method without a schedule here fails."""
    assert set(gp.METHODS) == {method for method, _ in VARIANTS.values()}
