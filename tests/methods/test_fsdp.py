"""Methods on FSDP2-sharded models: 2 gloo ranks under torchrun against one process.

Each rank trains on its half of every batch, so FSDP2's averaged gradient is the whole batch's
gradient: the sharded run and the one-process run see the same numbers (to float round-off).
The worker is tests/methods/fsdp_worker.py.
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.sparsity.sharding import ShardingError, check_sharding, count_nonzero, full, local, local_part
from tests.helpers import REPO, run_captured, torchrun

WORKER = Path(__file__).with_name("fsdp_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
# C-GaP in the default suite (gathered magnitudes, a phase's grow and prune); GMP, RigL (gathered
# gradients), SET, one-shot and ADMM (its Z and U laid out as the parameters) with `make test-slow`
SHARDED_METHODS = [
    "cgap",
    pytest.param("gmp", marks=pytest.mark.slow),
    pytest.param("rigl", marks=pytest.mark.slow),
    pytest.param("set", marks=pytest.mark.slow),
    pytest.param("oneshot", marks=pytest.mark.slow),
    pytest.param("admm", marks=pytest.mark.slow),
]


def launch(method: str, out: Path, ranks: int, *extra: str) -> list[dict[str, Any]]:
    prefix = [sys.executable] if ranks == 1 else torchrun(ranks)
    done = run_captured([*prefix, str(WORKER), method, str(out), *extra], env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(Path(f"{out}.{rank}.json").read_text()) for rank in range(ranks)]


@cache
def runs(method: str, tmp: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(one-process run, the two ranks of the sharded run) of `method`."""
    single = launch(method, Path(tmp) / f"{method}-single", 1)[0]
    sharded = launch(method, Path(tmp) / f"{method}-sharded", 2)
    return single, sharded


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("fsdp"))


@pytest.mark.parametrize("method", SHARDED_METHODS)
def test_sharded_training_ends_sparse_with_the_one_process_masks(method: str, tmp: str) -> None:
    single, (rank0, rank1) = runs(method, tmp)
    for rank in (rank0, rank1):
        assert "error" not in rank, rank.get("error")
        assert rank["sharded"]
    assert rank0["masks"] == rank1["masks"], "the ranks hold different masks"
    for name, mask in rank0["masks"].items():
        kept = torch.tensor(mask, dtype=torch.bool)
        weight = torch.tensor(rank0["weights"][name])
        assert int((weight[~kept] != 0).sum()) == 0, f"{name}: nonzero weights at pruned positions"
        reference = torch.tensor(single["masks"][name], dtype=torch.bool)
        # exact per-layer selection from the same whole weights: no tie may differ either
        assert int((kept != reference).sum()) == 0, f"{name}: masks differ from the one-process run"
        assert abs(1 - kept.float().mean().item() - 0.7) < 0.02, f"{name}: not at the target sparsity"
    assert rank0["report"] == rank1["report"] == single["report"]
    assert rank0["report_overall"] == rank1["report_overall"] == pytest.approx(0.7, abs=0.02)


def test_sharded_model_exports_the_file_one_process_exports(tmp: str) -> None:
    """export_model on every rank gathers the whole tensors; rank 0 writes the one file."""
    from safetensors.torch import load_file

    single, (rank0, rank1) = runs("cgap", tmp)
    assert rank0["export"] == rank1["export"] and rank0["export"]["file_bytes"] > 0
    assert rank0["export"]["sparsity"] == pytest.approx(single["export"]["sparsity"])
    one = load_file(str(Path(tmp) / "cgap-single.safetensors"))
    two = load_file(str(Path(tmp) / "cgap-sharded.safetensors"))
    assert one.keys() == two.keys()
    for key in one:
        if one[key].is_floating_point():
            torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=key)
        else:
            assert torch.equal(two[key], one[key]), key


def test_mask_memory_per_rank_falls_with_the_world_size(tmp: str) -> None:
    single, (rank0, rank1) = runs("cgap", tmp)
    assert single["local_mask_elements"] == single["mask_elements"]
    assert rank0["mask_elements"] == single["mask_elements"]
    # each rank holds its rows only: 40 + 30 + 7 output rows split 20/20, 15/15, 4/3
    assert rank0["local_mask_elements"] + rank1["local_mask_elements"] == single["mask_elements"]
    assert max(rank0["local_mask_elements"], rank1["local_mask_elements"]) <= 0.52 * single["mask_elements"]


def test_sparsifier_built_before_fully_shard_fails_at_the_first_forward(tmp: str) -> None:
    """Never dense training in silence: the user's loop steps an optimizer over the sharded
    parameters, which the sparsifier never sees; the model's next forward refuses."""
    for rank in launch("gmp", Path(tmp) / "gmp-before", 2, "--mode", "before"):
        assert rank.get("error_type") == "ShardingError", rank.get("error", "trained without an error")
        assert "\n" not in rank["error"]
        assert "sharded (fully_shard) after the sparsifier was built" in rank["error"]
        assert "build the sparsifier after fully_shard()" in rank["error"]


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Any:
    """A one-process gloo group, enough for fully_shard to make DTensor parameters."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    ("method", "kwargs", "message"),
    [
        (
            "cgap",
            {"storage": "compact"},
            "storage='compact' is not supported on sharded models yet; use storage='masked'",
        ),
        ("pgap", {}, "P-GaP does not run on FSDP2-sharded models yet ('0.weight' is sharded)"),
    ],
)
def test_what_cannot_train_sharded_yet_is_refused_at_construction(
    method: str, kwargs: dict[str, Any], message: str, one_rank_group: None
) -> None:
    from torch.distributed.fsdp import fully_shard

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    fully_shard(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    phases = {"steps_per_phase": 2, "rounds": 1}
    schedule = {"cgap": phases, "pgap": phases, "admm": {"admm_steps": 4}}
    with pytest.raises(ShardingError) as error:
        gp.get_method(method)(model, optimizer, sparsity=0.5, **schedule.get(method, {}), **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not any(name.endswith("_mask") for name, _ in model.named_buffers()), "construction left masks"


def test_fsdp1_is_refused_naming_fsdp2() -> None:
    """FullyShardedDataParallel needs an accelerator to be built, so the check is shown on an
    instance made without its constructor (the check only asks the module's type)."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = nn.Sequential(nn.Linear(4, 4))
    wrapper = FullyShardedDataParallel.__new__(FullyShardedDataParallel)
    nn.Module.__init__(wrapper)
    model.add_module("wrapped", wrapper)
    with pytest.raises(ShardingError, match=r"FSDP1.*fully_shard\) and build the sparsifier after it"):
        check_sharding(model, dict(model.named_parameters()), "C-GaP", supported=True, storage="masked")


def test_replaced_parameter_is_refused_at_the_next_forward() -> None:
    """load_state_dict(assign=True) after construction swaps the Parameter objects: their masks
    would no longer reach the weights that train."""
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    gp.GMP(model, optimizer, sparsity=0.5, start_step=1, end_step=4, frequency=1)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("_mask")}
    model.load_state_dict(state, strict=False, assign=True)
    with pytest.raises(
        ShardingError, match=r"'0.weight' was replaced by a new parameter after the sparsifier"
    ):
        model(torch.randn(1, 8))


def test_a_deepcopy_of_the_model_still_runs() -> None:
    """copy.deepcopy copies the model's hooks with it (benchmarks recalibrate BatchNorm on a
    copy): the copy's parameters are its own, not replaced ones."""
    import copy

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    gp.GMP(model, optimizer, sparsity=0.5, start_step=1, end_step=4, frequency=1)
    copy.deepcopy(model)(torch.randn(1, 8))
    model(torch.randn(1, 8))


def test_helpers_leave_ordinary_tensors_alone() -> None:
    tensor = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    assert local(tensor) is tensor and full(tensor) is tensor
    assert local_part(tensor, torch.zeros(2, 2)) is tensor
    assert count_nonzero(tensor) == 2
