"""P-GaP and data parallelism under torchrun (2 gloo processes on localhost) against one process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from growprune.records import MergeRecord, read_records
from tests.helpers import GROWPRUNE, gap_method, run_captured, start_train, torchrun

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def recipe_file(tmp_path: Path, method: dict, n_train: int = 1024, hidden: int = 64, **extra: dict) -> Path:
    recipe = {
        "name": "dist",
        "data": {"name": "synthetic", "args": {"n_train": n_train, "n_test": 256, "dim": 32}},
        "model": {"name": "mlp", "args": {"hidden": [hidden, hidden]}},
        "optimizer": {"name": "sgd", "lr": 0.05},
        "method": method,
        "training": {"batch_size": 32, "seed": 0, "threads": 1, "log_every": 10},
        "output": {"tensorboard": False, "report": False, "checkpoint_every_minutes": None},
        **extra,
    }
    path = tmp_path / f"{method['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def growprune_on(procs: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`growprune ARGS` on `procs` local processes (torchrun unless 1), run to its end."""
    command = list(GROWPRUNE) if procs == 1 else [*torchrun(procs), "-m", "growprune"]
    return run_captured([*command, *args], env=ENV, timeout=timeout)


def train(recipe: Path, out: Path, procs: int = 1) -> subprocess.CompletedProcess[str]:
    result = growprune_on(procs, "train", str(recipe), "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)


PGAP = gap_method("pgap", partitions=2, rounds=2)


@pytest.mark.parametrize("merge", ["average", "owner"])
def test_pgap_two_processes_equal_single_process(tmp_path: Path, merge: str) -> None:
    """The torchrun merge and the single-process one agree, for each way of merging the entries
    outside the partitions (the MLP's biases: averaged, or from their weight's owner)."""
    recipe = recipe_file(tmp_path, {**PGAP, "merge_non_partition": merge})
    train(recipe, tmp_path / "single")
    train(recipe, tmp_path / "multi", 2)
    single, multi = final_state(tmp_path / "single")["model"], final_state(tmp_path / "multi")["model"]
    for key in single:
        assert torch.equal(single[key], multi[key]), key
    records = read_records(tmp_path / "multi" / "metrics.jsonl").records
    merges = [r for r in records if isinstance(r, MergeRecord)]
    assert [m.round for m in merges] == [1, 2]
    assert all(m.bytes_exchanged > 0 and m.wait_seconds >= 0 for m in merges)


def test_ddp_cgap_matches_single_process(tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, gap_method("cgap", partitions=3))
    train(recipe, tmp_path / "single")
    train(recipe, tmp_path / "ddp", 2)
    single, ddp = final_state(tmp_path / "single"), final_state(tmp_path / "ddp")
    for name, mask in single["sparsifier"]["masks"].items():
        # Measured: identical masks (0 of 6,784 positions differ). A magnitude tie at a threshold
        # could swap a pair under another float summation order, so allow two swapped pairs per
        # layer, not a share (the 3% this allowed before would hide ranks that drift apart).
        differ = int((mask != ddp["sparsifier"]["masks"][name]).sum())
        assert differ <= 4, f"{name}: {differ} of {mask.numel()} mask positions differ"
    for key, value in single["model"].items():
        if value.is_floating_point() and not key.endswith("_mask"):
            kept = single["model"].get(f"{key}_mask", torch.ones_like(value, dtype=torch.bool))
            kept = kept & ddp["model"].get(f"{key}_mask", torch.ones_like(value, dtype=torch.bool))
            torch.testing.assert_close(value[kept], ddp["model"][key][kept], rtol=1e-3, atol=1e-3)


CGAP_FSDP = {"name": "cgap", "sparsity": 0.8, "partitions": 2, "epochs_per_phase": 1, "rounds": 1}


def test_fsdp_run_equals_single_process_and_resumes_exactly(tmp_path: Path) -> None:
    """training.parallel: fsdp on 2 ranks ends with the one-process run's masks; a run resumed
    from a mid-epoch checkpoint ends bitwise where the uninterrupted one ends."""
    out = {
        "tensorboard": False,
        "report": False,
        "checkpoint_every_minutes": None,
        "checkpoint_every_steps": 20,
    }
    recipe = recipe_file(
        tmp_path,
        {**CGAP_FSDP, "finetune_epochs": 1},
        training={"batch_size": 32, "seed": 0, "threads": 1, "log_every": 10, "parallel": "fsdp"},
        output=out,
    )
    train(recipe, tmp_path / "single")
    train(recipe, tmp_path / "fsdp", 2)
    single, sharded = final_state(tmp_path / "single"), final_state(tmp_path / "fsdp")
    assert single["model"].keys() == sharded["model"].keys()  # whole tensors, the one-process format
    for name, mask in single["sparsifier"]["masks"].items():
        assert torch.equal(mask, sharded["sparsifier"]["masks"][name]), name
    for key, value in single["model"].items():
        torch.testing.assert_close(sharded["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    # the same run resumed from step 80 of 96 (mid-epoch), its later checkpoints gone
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "fsdp", resumed)
    for name in ("ckpt-00000096.pt", "final.pt", "best.pt"):
        (resumed / "checkpoints" / name).unlink(missing_ok=True)
    result = growprune_on(2, "train", "--resume", str(resumed), "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr and "ckpt-00000080.pt" in result.stderr
    again = final_state(resumed)
    for key, value in sharded["model"].items():
        assert torch.equal(again["model"][key], value), key


@pytest.mark.slow  # the engine's FSDP path runs in test_fsdp_run_equals_single_process_and_resumes_exactly
def test_bundled_fsdp_recipe_trains_the_transformer_sharded(tmp_path: Path) -> None:
    """translation/cgap-quick-fsdp's smoke on 2 ranks: the Transformer (tied embeddings,
    cross-attention computed outside its decoder blocks) trains sharded to its target."""
    out = tmp_path / "run"
    result = growprune_on(
        2, "train", "translation/cgap-quick-fsdp", "--smoke", "--out", str(out), "--no-progress"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    final = final_state(out)
    masks = final["sparsifier"]["masks"]
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert abs(kept - 0.2) < 0.01
    for name, mask in masks.items():
        assert int((final["model"][name][~mask] != 0).sum()) == 0, f"{name}: nonzero weights where pruned"


@pytest.mark.parametrize(
    ("method", "message"),
    [
        (PGAP, "training.parallel: P-GaP does not run on FSDP2-sharded models yet"),
        pytest.param(
            {**CGAP_FSDP, "storage": "compact"},
            "training.parallel: fsdp trains in masked storage only",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_fsdp_refuses_what_it_cannot_shard(tmp_path: Path, method: dict, message: str) -> None:
    recipe = recipe_file(
        tmp_path, method, training={"batch_size": 32, "seed": 0, "threads": 1, "parallel": "fsdp"}
    )
    result = growprune_on(2, "train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors and message in errors[0], result.stderr[-2000:]


def test_killed_worker_restarts_and_ends_with_same_masks(tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, {**PGAP, "rounds": 4}, n_train=8192, hidden=512)
    train(recipe, tmp_path / "reference")
    out = tmp_path / "elastic"
    launcher = torchrun(2, "--max-restarts", "1")
    proc = start_train(
        recipe, out, ENV, *launcher, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline and not list((out / "checkpoints").glob("ckpt-*.pt")):
        time.sleep(0.02)
    assert list((out / "checkpoints").glob("ckpt-*.pt")), "no merge checkpoint appeared"
    victims = subprocess.run(["pgrep", "-f", f"growprune train {recipe}"], capture_output=True, text=True)
    workers = [int(pid) for pid in victims.stdout.split() if int(pid) != proc.pid]
    assert workers, "no worker process found"
    os.kill(max(workers), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "resumed from" in stderr, "the restarted workers did not resume from the merge checkpoint"
    expected, got = final_state(tmp_path / "reference"), final_state(out)
    for name, mask in expected["sparsifier"]["masks"].items():
        assert torch.equal(mask, got["sparsifier"]["masks"][name]), name


def test_pgap_refuses_process_count_not_multiple_of_k(tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, {**PGAP, "partitions": 3})
    result = growprune_on(
        2, "train", str(recipe), "--out", str(tmp_path / "bad"), "--no-progress", timeout=120
    )
    assert result.returncode != 0
    assert "multiple of 3 processes" in result.stderr


@pytest.mark.parametrize("world", [2])
def test_mask_mismatch_is_an_error(tmp_path: Path, world: int) -> None:
    script = tmp_path / "mismatch.py"
    script.write_text(
        "import torch, torch.distributed as dist\n"
        "from growprune.sparsity.consensus import verify_masks_equal\n"
        "dist.init_process_group('gloo')\n"
        "mask = torch.ones(10, dtype=torch.bool); mask[dist.get_rank()] = False\n"
        "try:\n"
        "    verify_masks_equal({'w': mask}, what='test')\n"
        "except RuntimeError as err:\n"
        "    print('MISMATCH', err, flush=True)\n"
        "dist.destroy_process_group()\n"
    )
    result = run_captured([*torchrun(world), str(script)], env=ENV, timeout=120)
    # Both ranks print; their lines may interleave in the shared pipe, so count the pieces.
    assert result.stdout.count("MISMATCH") == world, result.stderr[-2000:]
    assert result.stdout.count("masks differ across ranks after test") == world, result.stdout
