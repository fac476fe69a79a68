"""P-GaP: one worker's mask schedule (invariant 4) and the merge as a pure function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import growprune as gp
from tests.methods import zoo


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return zoo.MLP((16, 32, 32, 24, 10))


def make(worker: int = 0, **kwargs: object) -> tuple[nn.Module, gp.PGaP]:
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    args = {
        "sparsity": 0.75,
        "partitions": 2,
        "steps_per_phase": 4,
        "rounds": 2,
        "finetune_steps": 3,
        **kwargs,
    }
    return model, gp.PGaP(model, optimizer, worker=worker, **args)


def dense_partitions(sparsifier: gp.PGaP) -> list[int]:
    masks = sparsifier.masks
    return [k for k, part in enumerate(sparsifier.partitions) if all(bool(masks[n].all()) for n in part)]


@pytest.mark.parametrize("worker", [0, 1])
def test_worker_k_holds_exactly_partition_k_dense(worker: int) -> None:
    _, sparsifier = make(worker)
    assert dense_partitions(sparsifier) == [worker]
    for k, part in enumerate(sparsifier.partitions):
        if k != worker:
            for name in part:
                assert abs(sparsifier.mask_set.kept(name) - sparsifier.keep_counts[name]) <= 1
    sparsifier.begin_round(1, 1 - worker)
    assert dense_partitions(sparsifier) == [1 - worker]
    assert str(sparsifier.phase) == f"round 2/2, partition {2 - worker}/2 dense"


def test_merge_takes_partitions_from_owners_and_averages_the_rest() -> None:
    model, sparsifier = make()
    owner = sparsifier.partition_owner()
    states = []
    for k in range(2):
        state = {key: value.clone() for key, value in model.state_dict().items()}
        for key in state:
            if state[key].is_floating_point():
                state[key].fill_(float(k + 1))
        states.append(state)
    merged = gp.merge_worker_states(states, owner)
    for key, value in merged.items():
        if key in owner:
            assert torch.all(value == owner[key] + 1), key
        elif value.is_floating_point():
            assert torch.all(value == 1.5), key  # mean of 1 and 2
    first = gp.merge_worker_states(states, owner, mode="group0")
    assert all(torch.all(first[k] == 1.0) for k in first if k not in owner and first[k].is_floating_point())
    with pytest.raises(ValueError, match="merge_non_partition"):
        gp.merge_worker_states(states, owner, mode="median")


def test_owner_merge_takes_each_entry_from_the_worker_of_its_layer() -> None:
    """`owner`: a bias goes with its weight, a BatchNorm with the pruned layer before it; what
    comes before the first pruned layer is averaged."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.BatchNorm1d(16),  # before any pruned layer: averaged
        nn.Linear(16, 32),
        nn.BatchNorm1d(32),  # follows layer 1 (partition 0)
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.BatchNorm1d(32),  # follows layer 4
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    sparsifier = gp.PGaP(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        sparsity=0.5,
        partitions=3,
        steps_per_phase=2,
        rounds=1,
        finetune_steps=1,
        merge_non_partition="owner",
    )
    owner = sparsifier.partition_owner()
    assert owner == {"1.weight": 0, "4.weight": 1, "7.weight": 2}
    states = []
    for k in range(3):
        state = {key: value.clone() for key, value in model.state_dict().items()}
        for value in state.values():
            if value.is_floating_point():
                value.fill_(float(k + 1))
        states.append(state)
    merged = gp.merge_worker_states(states, owner, mode="owner")
    expected = {"0.": 2.0, "1.": 1.0, "2.": 1.0, "4.": 2.0, "5.": 2.0, "7.": 3.0}
    for key, value in merged.items():
        if value.is_floating_point() and not key.endswith("_mask"):
            want = next(v for prefix, v in expected.items() if key.startswith(prefix))
            assert torch.all(value == want), (key, value.flatten()[0].item(), want)
    assert torch.equal(merged["2.num_batches_tracked"], states[0]["2.num_batches_tracked"])


def test_single_process_rounds_prune_every_partition_after_merge() -> None:
    model, sparsifier = make()
    sparsifier.step_count = sparsifier.steps_per_phase
    sparsifier.prune_after_merge()
    assert dense_partitions(sparsifier) == []
    assert abs(sparsifier.current_sparsity() - 0.75) < 1e-3
    assert sparsifier.merged_rounds == 1
    # between the merge and the next round the model is the merged, pruned one (what the engine
    # evaluates after every merge): its phase says so, not "round 2, partition 2 dense"
    assert sparsifier.phase.name == "merged" and str(sparsifier.phase) == "merged after round 1/2"
    sparsifier.begin_round(1, 0)
    assert str(sparsifier.phase) == "round 2/2, partition 1/2 dense"
    sparsifier.step_count = 2 * sparsifier.steps_per_phase
    sparsifier.prune_after_merge()  # the last merge: fine-tuning follows, not another round
    assert sparsifier.phase.name == "finetune"


def test_library_merger_is_called_at_round_end() -> None:
    calls = []
    model, sparsifier = make(merger=lambda s: calls.append(s.step_count))
    x, y = torch.randn(8, 16), torch.randint(0, 10, (8,))
    for _ in range(sparsifier.total_steps):
        loss = nn.functional.cross_entropy(model(x), y)
        sparsifier.optimizer.zero_grad()
        loss.backward()
        sparsifier.optimizer.step()
        sparsifier.step()
    assert calls == [4, 8]
    assert str(sparsifier.phase) == "done"
    assert abs(gp.sparsity_report(model).overall - 0.75) < 1e-2


def test_worker_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="worker must be in"):
        make(worker=2)
