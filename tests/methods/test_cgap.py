"""C-GaP (paper Algorithm 1): rotation of the dense partition, prune-grow, final prune, fine-tune."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import make_optimizer, params_by_name, snapshot_masks, train


def make(case: str = "transformer", optimizer_kind: str = "sgd", **kwargs: object) -> tuple:
    model = zoo.build(case)
    optimizer = make_optimizer(optimizer_kind, model)
    args = {
        "sparsity": 0.8,
        "partitions": 4,
        "steps_per_phase": 3,
        "rounds": 2,
        "finetune_steps": 2,
        **kwargs,
    }
    return model, optimizer, gp.CGaP(model, optimizer, **args)


def test_schedule_rotation_and_phases() -> None:
    model, optimizer, cgap = make()
    k, spp, rounds = 4, 3, 2
    assert cgap.num_partitions == k and cgap.gap_steps == 8 and cgap.total_steps == 8 * 3 + 2
    seen_dense: list[int] = []
    phases: list[gp.Phase] = [cgap.phase]

    def record(step: int) -> None:
        phases.append(cgap.phase)

    train(model, optimizer, cgap, zoo.batches("transformer", cgap.total_steps + 1), record)
    for step, phase in enumerate(phases):
        gap_step = step // spp
        if gap_step < rounds * k:
            assert phase.name == "gap"
            assert phase.dense_partition == gap_step % k + 1 and phase.round == gap_step // k + 1
            assert str(phase) == f"round {gap_step // k + 1}/{rounds}, partition {gap_step % k + 1}/{k} dense"
            seen_dense.append(phase.dense_partition)
        elif step < rounds * k * spp + 2:
            assert phase.name == "finetune"
        else:
            assert phase.name == "done"
    assert set(seen_dense) == set(range(1, k + 1))  # every weight is trained dense at some point
    assert phases[-1].name == "done" and cgap.done
    events = [(h.step, h.event) for h in cgap.history]
    assert events == [(0, "init")] + [(s * spp, "prune-grow") for s in range(1, 8)] + [(24, "final-prune")]


@pytest.mark.parametrize("case", ["transformer", "conv1d_depthwise", "mlp"])
def test_memory_never_exceeds_one_partition_dense(case: str) -> None:
    """The model holds at most (1 - r) + r * (largest partition share) of its weights."""
    partitions = 3 if case == "mlp" else 4
    model, optimizer, cgap = make(case, partitions=partitions)
    total = sum(cgap.numels.values())
    largest = max(sum(cgap.numels[n] for n in part) for part in cgap.partitions) / total
    bound = (1 - 0.8) + 0.8 * largest
    densities = [sum(int(m.sum()) for m in cgap.masks.values()) / total]
    train(
        model,
        optimizer,
        cgap,
        zoo.batches(case, cgap.total_steps),
        lambda _: densities.append(sum(int(m.sum()) for m in cgap.masks.values()) / total),
    )
    assert max(densities) <= bound + len(cgap.names) / total
    assert densities[-1] == pytest.approx(0.2, abs=1e-3)


def test_prune_keeps_largest_and_surviving_weights_keep_their_values() -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    updated: dict[str, torch.Tensor] = {}
    # Registered before the sparsifier's own hook, so it sees the weights the update produced,
    # before the schedule (which runs in the sparsifier's post-step hook) prunes or grows.
    optimizer.register_step_post_hook(
        lambda *_: updated.update({n: p.detach().clone() for n, p in model.named_parameters()})
    )
    cgap = gp.CGaP(model, optimizer, sparsity=0.7, partitions=3, steps_per_phase=2, rounds=1)
    params = params_by_name(cgap)
    pruned_seen = grown_seen = 0
    for step, (x, y) in enumerate(zoo.batches("mlp", 6), start=1):
        before = snapshot_masks(cgap)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        cgap.step()
        for n, p in params.items():
            mask = cgap.masks[n]
            assert torch.equal(p.detach(), updated[n] * mask)  # masking only: no other change
            if before[n].all() and not mask.all():  # the partition pruned back at this step
                assert updated[n].abs()[mask].min() >= updated[n].abs()[~mask].max()
                assert int(mask.sum()) == cgap.keep_counts[n]
                pruned_seen += 1
            if mask.all() and not before[n].all():  # the partition grown at this step
                assert (p.detach()[~before[n]] == 0).all()
                grown_seen += 1
        if step % 2 == 0:
            assert sum(1 for n in cgap.names if cgap.masks[n].all()) == (1 if step < 6 else 0)
    assert pruned_seen == 3 and grown_seen == 2


def test_magnitude_init_and_pattern_partitions() -> None:
    model = zoo.build("transformer")
    initial = {n: p.detach().abs().clone() for n, p in model.named_parameters()}
    groups = [["embed.*", "encoder.layers.0.*"], ["encoder.layers.1.*", "head.*"]]
    cgap = gp.CGaP(
        model,
        make_optimizer("sgd", model),
        sparsity=0.8,
        partitions=groups,
        steps_per_phase=2,
        init="magnitude",
    )
    assert cgap.partitions[0][0] == "embed.weight" and cgap.partitions[1][-1] == "head.weight"
    assert all(cgap.masks[n].all() for n in cgap.partitions[0])
    for n in cgap.partitions[1]:
        mask = cgap.masks[n]
        assert int(mask.sum()) == cgap.keep_counts[n]
        assert initial[n][mask].min() >= initial[n][~mask].max()


def test_random_partition_mode_is_seeded() -> None:
    first = make(partition_mode="random", seed=4)[2].partitions
    again = make(partition_mode="random", seed=4)[2].partitions
    other = [make(partition_mode="random", seed=s)[2].partitions for s in range(5, 9)]
    assert first == again and any(p != first for p in other)
    assert sorted(n for part in first for n in part) == sorted(make()[2].names)


def test_reset_optimizer_modes() -> None:
    model, optimizer, cgap = make("mlp", partitions=3, reset_optimizer="all")
    train(model, optimizer, cgap, zoo.batches("mlp", 3))
    assert len(optimizer.state) == 0  # a fresh optimizer at every GaP step, as the authors' code
    model, optimizer, cgap = make("mlp", partitions=3, reset_optimizer="changed")
    train(model, optimizer, cgap, zoo.batches("mlp", 3))
    assert len(optimizer.state) == len(list(model.parameters()))


def test_single_partition_is_dense_then_pruned() -> None:
    model, optimizer, cgap = make("mlp", partitions=1, steps_per_phase=4, rounds=1, finetune_steps=0)
    assert all(m.all() for m in cgap.masks.values())
    train(model, optimizer, cgap, zoo.batches("mlp", 4))
    assert cgap.current_sparsity() == pytest.approx(0.8, abs=1e-3)


def test_nm_pattern() -> None:
    model, optimizer, cgap = make("mlp", partitions=3, pattern="2:4", sparsity=0.5)
    for n in cgap.partitions[1] + cgap.partitions[2]:
        assert (cgap.masks[n].reshape(-1, 4).sum(dim=1) == 2).all()
    train(model, optimizer, cgap, zoo.batches("mlp", cgap.total_steps))
    for mask in cgap.masks.values():
        assert (mask.reshape(-1, 4).sum(dim=1) == 2).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"partitions": 11}, r"between 1 and the number of pruned layers \(10\), got 11"),
        ({"partitions": [["*"], []]}, r"partition 1 \(\[\]\) is empty"),
        (
            {"partitions": ["embed.*"]},
            r"layer 'encoder\.layers\.0\.self_attn\.in_proj_weight' matches no partition",
        ),
        ({"steps_per_phase": 0}, "steps_per_phase must be an integer >= 1"),
        ({"rounds": 0}, "rounds must be an integer >= 1"),
        ({"partition_mode": "striped"}, "partition_mode must be one of contiguous, random"),
        ({"reset_optimizer": "some"}, "reset_optimizer must be one of all, changed"),
        ({"init": "zeros"}, "init must be one of random, magnitude"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kwargs)
