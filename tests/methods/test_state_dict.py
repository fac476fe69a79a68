"""Invariant 5: save at any step, load into fresh objects, continue == the uninterrupted run, bitwise."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import VARIANTS, make_optimizer, make_sparsifier, train

TOTAL = 24  # every schedule in harness.SCHEDULES is over within 24 steps


@pytest.fixture(autouse=True)
def deterministic() -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def fresh(variant: str, case: str, optimizer_kind: str, init_seed: int, **overrides: Any) -> tuple:
    model = zoo.build(case, seed=init_seed)
    optimizer = make_optimizer(optimizer_kind, model)
    sparsifier = make_sparsifier(variant, model, optimizer, **{**zoo.CASES[case].kwargs, **overrides})
    return model, optimizer, sparsifier


def roundtrip(obj: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def run_resumed(variant: str, case: str, optimizer_kind: str, save_at: int, **overrides: Any) -> tuple:
    data = zoo.batches(case, TOTAL)
    model, optimizer, sparsifier = fresh(variant, case, optimizer_kind, 0, **overrides)
    train(model, optimizer, sparsifier, data[:save_at])
    saved = roundtrip(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sparsifier": sparsifier.state_dict(),
        }
    )
    del model, optimizer, sparsifier
    # a different initialization: everything that matters must come from the checkpoint
    model, optimizer, sparsifier = fresh(variant, case, optimizer_kind, 1, **overrides)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    sparsifier.load_state_dict(saved["sparsifier"])
    assert sparsifier.step_count == save_at
    train(model, optimizer, sparsifier, data[save_at:])
    return model, optimizer, sparsifier


def run_straight(variant: str, case: str, optimizer_kind: str, **overrides: Any) -> tuple:
    model, optimizer, sparsifier = fresh(variant, case, optimizer_kind, 0, **overrides)
    train(model, optimizer, sparsifier, zoo.batches(case, TOTAL))
    return model, optimizer, sparsifier


def assert_identical(a: tuple, b: tuple) -> None:
    model_a, opt_a, sp_a = a
    model_b, opt_b, sp_b = b
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), f"{key} differs after resume"
    for name in sp_a.names:
        assert torch.equal(sp_a.masks[name], sp_b.masks[name]), name
    assert sp_a.history == sp_b.history and sp_a.step_count == sp_b.step_count
    for (pa, sa), (pb, sb) in zip(opt_a.state_dict()["state"].items(), opt_b.state_dict()["state"].items()):
        assert pa == pb and sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), f"optimizer {pa} {key}"
    assert sp_a.extra_state().keys() == sp_b.extra_state().keys()


# C-GaP schedule (harness): 3 partitions x 3 steps x 2 rounds, GaP ends at 18, fine-tune to 22.
CGAP_POINTS = {
    "construction": 0,
    "mid_gap_step": 4,
    "phase_boundary": 6,
    "last_gap_step": 17,
    "final_prune": 18,
    "finetune": 20,
}


@pytest.mark.parametrize("optimizer_kind", ["sgd", "adam"])
@pytest.mark.parametrize("point", list(CGAP_POINTS))
@pytest.mark.parametrize("variant", ["cgap", "cgap_keep_state"])
def test_cgap_resume_is_bitwise_identical(variant: str, point: str, optimizer_kind: str) -> None:
    straight = run_straight(variant, "cnn_bn", optimizer_kind)
    resumed = run_resumed(variant, "cnn_bn", optimizer_kind, CGAP_POINTS[point])
    assert_identical(straight, resumed)


# RigL/SET update every 4 steps until 18; ADMM: dense to 3, Z/U every 3 steps, prune at 12.
METHOD_POINTS = {
    "rigl": [3, 4, 5, 16],
    "set": [4, 7],
    "admm": [2, 3, 4, 6, 11, 12, 15],
    "gmp": [3, 5, 14],
    "oneshot": [4, 5],
}


@pytest.mark.parametrize(
    ("variant", "save_at"), [(v, s) for v, points in METHOD_POINTS.items() for s in points]
)
@pytest.mark.parametrize("case", ["mlp", "transformer"])
def test_method_resume_is_bitwise_identical(variant: str, save_at: int, case: str) -> None:
    straight = run_straight(variant, case, "adam")
    resumed = run_resumed(variant, case, "adam", save_at)
    assert_identical(straight, resumed)


def test_admm_state_holds_z_and_u() -> None:
    """The saved Z and U are the live ones (U is not Z, nor zero after two dual updates), and a
    sparsifier built from the state continues with exactly them."""
    model, optimizer, admm = fresh("admm", "mlp", "sgd", 0)
    train(model, optimizer, admm, zoo.batches("mlp", 8))  # ADMM from step 3, updates every 3
    state = roundtrip(admm.state_dict())
    assert set(state["extra"]["z"]) == set(admm.names) == set(state["extra"]["u"])
    for name in admm.names:
        z, u = state["extra"]["z"][name], state["extra"]["u"][name]
        assert torch.equal(z, admm.z[name]) and torch.equal(u, admm.u[name])
        assert u.abs().sum() > 0 and not torch.equal(u, z)
        assert int((z != 0).sum()) <= admm.keep_counts[name]  # Z is the projection onto the sparse set
    other_model = zoo.build("mlp", seed=1)
    other_optimizer = make_optimizer("sgd", other_model)
    other = make_sparsifier("admm", other_model, other_optimizer, **zoo.CASES["mlp"].kwargs, state=state)
    for name in admm.names:
        assert torch.equal(other.z[name], admm.z[name]) and torch.equal(other.u[name], admm.u[name])


def test_loading_a_state_from_another_schedule_is_refused() -> None:
    model, optimizer, sparsifier = fresh("cgap", "mlp", "sgd", 0)
    state = roundtrip(sparsifier.state_dict())
    other = fresh("cgap", "mlp", "sgd", 0, steps_per_phase=5)[2]
    with pytest.raises(ValueError, match="steps_per_phase: saved 3 != now 5"):
        other.load_state_dict(state)
    other = fresh("set", "mlp", "sgd", 0)[2]
    with pytest.raises(ValueError, match="sparsifier state does not match this sparsifier"):
        other.load_state_dict(state)
    other = fresh("cgap", "mlp", "sgd", 0, seed=5)[2]
    with pytest.raises(ValueError, match="seed: saved 0 != now 5"):
        other.load_state_dict(state)


def test_state_survives_a_new_process(tmp_path: Any) -> None:
    """torch.save to a file, then read it in a separate interpreter and continue there."""
    import subprocess
    import sys

    data = zoo.batches("mlp", TOTAL)
    model, optimizer, sparsifier = fresh("cgap", "mlp", "sgd", 0)
    train(model, optimizer, sparsifier, data[:7])
    path = tmp_path / "ckpt.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sparsifier": sparsifier.state_dict(),
        },
        path,
    )
    train(model, optimizer, sparsifier, data[7:])
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    out = tmp_path / "after.pt"
    code = f"""
import torch
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
from tests.methods import zoo
from tests.methods.harness import make_optimizer, make_sparsifier, train
ckpt = torch.load({str(path)!r}, weights_only=True)
model = zoo.build("mlp", seed=3)
optimizer = make_optimizer("sgd", model)
sparsifier = make_sparsifier("cgap", model, optimizer)
model.load_state_dict(ckpt["model"]); optimizer.load_state_dict(ckpt["optimizer"])
sparsifier.load_state_dict(ckpt["sparsifier"])
train(model, optimizer, sparsifier, zoo.batches("mlp", {TOTAL})[7:])
torch.save(model.state_dict(), {str(out)!r})
"""
    root = __file__.rsplit("/tests/", 1)[0]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True)
    got = torch.load(out, weights_only=True)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_sparsifier_state_is_plain_data() -> None:
    """weights_only=True loading accepts it: no custom classes inside."""
    for variant in VARIANTS:
        model, optimizer, sparsifier = fresh(variant, "mlp", "sgd", 0)
        train(model, optimizer, sparsifier, zoo.batches("mlp", 6))
        state = roundtrip(sparsifier.state_dict())
        assert state["step"] == 6 and state["config"] == sparsifier.config()
        assert isinstance(sparsifier, gp.Sparsifier)
