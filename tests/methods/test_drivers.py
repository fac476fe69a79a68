"""Invariants 1, 2 and 5 whoever drives the optimizer (issue 13, items 1-5 and 7).

Each test drives the optimizer the way some user's code does -- a closure (Lightning, LBFGS), a
wrapper around the torch optimizer (accelerate, Lightning), GradScaler skipping a step, a partial
``load_state_dict`` or an in-place edit between steps, a framework that restores model and
optimizer before it builds the sparsifier -- and checks the weights and optimizer state directly,
never through the sparsifier's own bookkeeping.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import growprune as gp
from tests.methods import zoo
from tests.methods.harness import SCHEDULES, STEPS, VARIANTS, make_optimizer, make_sparsifier

OPTIMIZERS: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
    "sgd": lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4),
    "adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-2),
    "adamw": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda m: torch.optim.RMSprop(m.parameters(), lr=1e-3, momentum=0.5, weight_decay=1e-3),
    "nadam": lambda m: torch.optim.NAdam(m.parameters(), lr=1e-2),
}


def pruned_nonzero(sparsifier: gp.Sparsifier) -> int:
    """Pruned weights that are not exactly 0, read from the parameters themselves."""
    return sum(
        int((t.param.detach()[~getattr(t.module, f"{t.leaf}_mask")] != 0).sum()) for t in sparsifier.targets
    )


def pruned_state_nonzero(sparsifier: gp.Sparsifier, optimizer: torch.optim.Optimizer) -> int:
    count = 0
    for t in sparsifier.targets:
        mask = sparsifier.masks[t.name]
        for value in optimizer.state.get(t.param, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == t.param.shape:
                count += int((value[~mask] != 0).sum())
    return count


def closure_step(model: nn.Module, optimizer: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    optimizer.step(closure)


def oneshot_mlp(
    new_optimizer: Callable[[nn.Module], Any] = lambda m: make_optimizer("sgd", m), sparsity: float = 0.75
) -> tuple[nn.Module, Any, gp.OneShot]:
    """The zoo's MLP, an optimizer for it and a OneShot sparsifier at `sparsity` on both."""
    model = zoo.build("mlp")
    optimizer = new_optimizer(model)
    return model, optimizer, gp.OneShot(model, optimizer, sparsity=sparsity)


def plain_step(model: nn.Module, optimizer: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


# -- 1. closures --------------------------------------------------------------------------------
def test_closure_step_with_adamw_keeps_the_model_sparse() -> None:
    """The issue's reproduction: OneShot(0.8) + AdamW, three opt.step(closure); sp.step()."""
    model = zoo.build("mlp")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.8)
    expected_zeros = sum(t.numel - sparsifier.keep_counts[t.name] for t in sparsifier.targets)
    for batch in zoo.batches("mlp", 3):
        closure_step(model, optimizer, batch)
        sparsifier.step()
        zeros = sum(int((t.param.detach() == 0).sum()) for t in sparsifier.targets)
        assert zeros >= expected_zeros
        assert pruned_nonzero(sparsifier) == 0
        assert pruned_state_nonzero(sparsifier, optimizer) == 0


@pytest.mark.parametrize("call_sparsifier_step", [True, False], ids=["with-sp-step", "hooks-only"])
@pytest.mark.parametrize("optimizer_kind", sorted(OPTIMIZERS))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_closure_loop_keeps_invariants_at_every_step(
    variant: str, optimizer_kind: str, call_sparsifier_step: bool
) -> None:
    """Lightning's automatic optimization: forward and backward run inside optimizer.step."""
    model = zoo.build("mlp")
    optimizer = OPTIMIZERS[optimizer_kind](model)
    sparsifier = make_sparsifier(variant, model, optimizer)
    for step, batch in enumerate(zoo.batches("mlp", STEPS), start=1):
        closure_step(model, optimizer, batch)
        if call_sparsifier_step:
            sparsifier.step()
        assert sparsifier.step_count == step
        assert pruned_nonzero(sparsifier) == 0, f"step {step}: pruned weight != 0"
        assert pruned_state_nonzero(sparsifier, optimizer) == 0, f"step {step}: pruned state != 0"
    assert sparsifier.done


def test_closure_and_plain_loops_give_identical_runs() -> None:
    """The closure is masked right after backward, so both drivers do the same arithmetic."""
    results = []
    for step_fn in (plain_step, closure_step):
        model = zoo.build("mlp")
        optimizer = make_optimizer("adam", model)
        sparsifier = make_sparsifier("rigl", model, optimizer)
        for batch in zoo.batches("mlp", STEPS):
            step_fn(model, optimizer, batch)
        results.append((model.state_dict(), sparsifier.history))
    (a, hist_a), (b, hist_b) = results
    assert hist_a == hist_b
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_lbfgs_closure_called_many_times_per_step() -> None:
    """LBFGS evaluates the closure several times per step; every evaluation is masked."""
    model = zoo.build("mlp")
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=4)
    sparsifier = gp.GMP(model, optimizer, sparsity=0.6, start_step=1, end_step=3, frequency=1)
    for batch in zoo.batches("mlp", 4):
        closure_step(model, optimizer, batch)
        assert pruned_nonzero(sparsifier) == 0
    assert abs(sparsifier.current_sparsity() - 0.6) < 0.01


@pytest.mark.parametrize("variant", ["oneshot", "cgap", "rigl"])
def test_gradient_clipping_sees_the_sparse_gradient(variant: str) -> None:
    """Frameworks clip between backward and step (HF Trainer: max_grad_norm=1.0 by default):
    the norm must be that of the gradients the optimizer will use, pruned entries excluded."""
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    sparsifier = make_sparsifier(variant, model, optimizer)
    checked = 0
    for step, (x, y) in enumerate(zoo.batches("mlp", STEPS), start=1):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        masks = {n: m.clone() for n, m in sparsifier.masks.items()}
        grads = {t.name: t.param.grad.clone() for t in sparsifier.targets}
        dense_step = variant == "rigl" and sparsifier.is_update_step(step)  # type: ignore[attr-defined]
        if not dense_step:
            for name, grad in grads.items():
                assert (grad[~masks[name]] == 0).all(), f"step {step}: {name} gradient not masked"
            checked += 1
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        assert pruned_nonzero(sparsifier) == 0
    assert checked > STEPS // 2


# -- 2. weights changed outside the optimizer ---------------------------------------------------
def partial_dense_load(model: nn.Module) -> None:
    dense = {k: torch.randn_like(v) for k, v in model.state_dict().items() if k.endswith(".weight")}
    model.load_state_dict(dense, strict=False)


@torch.no_grad()
def in_place_edit(model: nn.Module) -> None:
    for p in model.parameters():
        p.add_(1.0)


@torch.no_grad()
def data_swap(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.data = torch.randn_like(module.weight)


@pytest.mark.parametrize("edit", [partial_dense_load, in_place_edit, data_swap])
@pytest.mark.parametrize("optimizer_kind", ["sgd", "adam", "adamw", "rmsprop"])
def test_weights_changed_outside_are_masked_by_the_next_step(
    edit: Callable[[nn.Module], None], optimizer_kind: str
) -> None:
    model, optimizer, sparsifier = oneshot_mlp(OPTIMIZERS[optimizer_kind])
    batches = zoo.batches("mlp", 6)
    for batch in batches[:2]:
        plain_step(model, optimizer, batch)
    edit(model)
    assert pruned_nonzero(sparsifier) > 0  # the edit really put values there
    plain_step(model, optimizer, batches[2])  # no sparsifier.step(): the hooks alone
    assert pruned_nonzero(sparsifier) == 0
    assert pruned_state_nonzero(sparsifier, optimizer) == 0
    for batch in batches[3:]:
        plain_step(model, optimizer, batch)
        assert pruned_nonzero(sparsifier) == 0


def test_sparsifier_step_masks_an_edit_at_once() -> None:
    model, optimizer, sparsifier = oneshot_mlp()
    plain_step(model, optimizer, zoo.batches("mlp", 1)[0])
    in_place_edit(model)
    sparsifier.step()
    assert pruned_nonzero(sparsifier) == 0


def test_optimizer_state_loaded_from_outside_is_masked() -> None:
    """An optimizer checkpoint from a dense run carries momentum for weights that are pruned here."""
    dense_model = zoo.build("mlp")
    dense_opt = make_optimizer("sgd", dense_model)
    for batch in zoo.batches("mlp", 3):
        plain_step(dense_model, dense_opt, batch)
    model, optimizer, sparsifier = oneshot_mlp()
    plain_step(model, optimizer, zoo.batches("mlp", 1)[0])
    optimizer.load_state_dict(dense_opt.state_dict())
    assert pruned_state_nonzero(sparsifier, optimizer) > 0
    plain_step(model, optimizer, zoo.batches("mlp", 1)[0])
    assert pruned_state_nonzero(sparsifier, optimizer) == 0
    assert pruned_nonzero(sparsifier) == 0


# -- 3. wrapped optimizers ----------------------------------------------------------------------
class Wrapper:
    """What accelerate, Lightning and DeepSpeed hand to callbacks: the torch optimizer inside."""

    def __init__(self, optimizer: Any, attribute: str = "optimizer") -> None:
        setattr(self, attribute, optimizer)
        self._inner = optimizer

    def step(self, closure: Any = None) -> Any:
        return self._inner.step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._inner.zero_grad(set_to_none=set_to_none)


@pytest.mark.parametrize("attribute", ["optimizer", "_optimizer"])
def test_wrapped_optimizer_is_unwrapped(attribute: str) -> None:
    model = zoo.build("mlp")
    torch_opt = make_optimizer("adam", model)
    wrapped = Wrapper(Wrapper(torch_opt, attribute))
    sparsifier = make_sparsifier("cgap", model, wrapped)
    assert sparsifier.optimizer is torch_opt
    for batch in zoo.batches("mlp", STEPS):
        plain_step(model, wrapped, batch)
        assert pruned_nonzero(sparsifier) == 0
    assert sparsifier.step_count == STEPS and sparsifier.done


def test_accelerate_optimizer() -> None:
    accelerate = pytest.importorskip("accelerate")
    model = zoo.build("mlp")
    accelerator = accelerate.Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, make_optimizer("sgd", model))
    assert type(optimizer).__name__ == "AcceleratedOptimizer"  # an Optimizer subclass without hooks
    sparsifier = gp.CGaP(model, optimizer, sparsity=0.75, partitions=3, steps_per_phase=2, finetune_steps=2)
    for x, y in zoo.batches("mlp", sparsifier.total_steps):
        optimizer.zero_grad()
        accelerator.backward(F.cross_entropy(model(x), y))
        optimizer.step()
        assert pruned_nonzero(sparsifier) == 0
    assert sparsifier.phase.name == "done"
    assert abs(gp.sparsity_report(model).overall - 0.75) < 0.01


def test_not_an_optimizer_fails_cleanly_and_a_retry_works() -> None:
    model = zoo.build("mlp")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        gp.CGaP(model, object(), sparsity=0.75, partitions=3, steps_per_phase=2)
    after = model.state_dict()
    assert after.keys() == before.keys()  # no mask buffers left behind
    sparsifier = gp.CGaP(model, make_optimizer("sgd", model), sparsity=0.75, partitions=3, steps_per_phase=2)
    assert len(sparsifier.masks) == 3


def test_a_failing_constructor_leaves_model_and_optimizer_as_they_were() -> None:
    """P-GaP's worker check and a subclass failing in on_start: nothing changed, nothing left."""
    model = zoo.build("mlp")
    optimizer = make_optimizer("adam", model)
    for batch in zoo.batches("mlp", 2):
        plain_step(model, optimizer, batch)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: v.clone() for k, v in optimizer.state[next(model.parameters())].items()}

    class Failing(gp.OneShot):
        method = "failing"

        def on_start(self) -> None:
            super().on_start()  # prunes (prune_step=0) ...
            raise RuntimeError("boom")  # ... then fails

    with pytest.raises(RuntimeError, match="boom"):
        Failing(model, optimizer, sparsity=0.75)
    with pytest.raises(ValueError, match="worker must be in"):
        gp.PGaP(model, optimizer, sparsity=0.75, partitions=3, steps_per_phase=2, worker=3)
    after = model.state_dict()
    assert after.keys() == weights.keys()
    for key in weights:
        assert torch.equal(after[key], weights[key]), key
    for key, value in optimizer.state[next(model.parameters())].items():
        assert torch.equal(value, state[key]), key
    assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks


# -- 4. attach and resume in the framework's order ----------------------------------------------
def roundtrip(obj: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def framework_resume(variant: str, optimizer_kind: str, save_at: int, how: str, persistent: bool) -> tuple:
    data = zoo.batches("mlp", STEPS)
    model = zoo.build("mlp", seed=0)
    optimizer = make_optimizer(optimizer_kind, model)
    sparsifier = make_sparsifier(variant, model, optimizer, persistent_masks=persistent)
    for batch in data[:save_at]:
        plain_step(model, optimizer, batch)
    saved = roundtrip(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "sparsifier": sparsifier.state_dict(),
        }
    )
    # A fresh process: model and optimizer restored first, then the sparsifier is built.
    model = zoo.build("mlp", seed=1)
    optimizer = make_optimizer(optimizer_kind, model)
    missing, unexpected = model.load_state_dict(saved["model"], strict=False)
    assert not missing and all(k.endswith("_mask") for k in unexpected)
    assert bool(unexpected) == persistent
    optimizer.load_state_dict(saved["optimizer"])
    if how == "state":
        sparsifier = make_sparsifier(variant, model, optimizer, state=saved["sparsifier"])
    else:
        sparsifier = make_sparsifier(variant, model, optimizer)
        sparsifier.load_state_dict(saved["sparsifier"])
    for batch in data[save_at:]:
        plain_step(model, optimizer, batch)
    return model, sparsifier


def straight(variant: str, optimizer_kind: str) -> tuple:
    model = zoo.build("mlp", seed=0)
    optimizer = make_optimizer(optimizer_kind, model)
    sparsifier = make_sparsifier(variant, model, optimizer)
    for batch in zoo.batches("mlp", STEPS):
        plain_step(model, optimizer, batch)
    return model, sparsifier


@pytest.mark.parametrize("how", ["state", "load_state_dict"])
@pytest.mark.parametrize("save_at", [1, 7, 13])
@pytest.mark.parametrize("variant", sorted(SCHEDULES))
def test_resume_in_framework_order_is_bitwise_identical(variant: str, save_at: int, how: str) -> None:
    model_a, sp_a = straight(variant, "adam")
    model_b, sp_b = framework_resume(variant, "adam", save_at, how, persistent=(save_at != 7))
    for name, param in model_a.named_parameters():
        assert torch.equal(param, dict(model_b.named_parameters())[name]), f"{name} differs after resume"
    for name in sp_a.names:
        assert torch.equal(sp_a.masks[name], sp_b.masks[name]), name
    assert sp_a.history == sp_b.history and sp_a.step_count == sp_b.step_count


def test_non_persistent_masks_stay_out_of_the_model_state_dict() -> None:
    model = zoo.build("mlp")
    sparsifier = gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.5, persistent_masks=False)
    assert not any(k.endswith("_mask") for k in model.state_dict())
    assert set(sparsifier.state_dict()["masks"]) == set(sparsifier.names)
    zoo.build("mlp").load_state_dict(model.state_dict())  # strict load into a fresh model


def test_state_from_another_schedule_is_refused_without_side_effects() -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    other = zoo.build("mlp")
    saved = gp.OneShot(other, make_optimizer("sgd", other), sparsity=0.5).state_dict()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="does not match"):
        gp.OneShot(model, optimizer, sparsity=0.8, state=saved)
    assert model.state_dict().keys() == weights.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


# -- 5. steps GradScaler skipped --------------------------------------------------------------
SCALED_OPTIMIZERS: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
    "sgd": lambda m: make_optimizer("sgd", m),
    # GradScaler always calls a fused optimizer's step and lets its kernel skip on inf
    "fused-adamw": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, fused=True),
}


@pytest.mark.parametrize("call_sparsifier_step", [True, False])
@pytest.mark.parametrize("optimizer_kind", sorted(SCALED_OPTIMIZERS))
def test_a_skipped_step_does_not_advance_the_schedule(
    optimizer_kind: str, call_sparsifier_step: bool
) -> None:
    model = zoo.build("mlp")
    optimizer = SCALED_OPTIMIZERS[optimizer_kind](model)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.75, prune_step=3)
    scaler = torch.amp.GradScaler("cpu")
    sparsity_after = []
    for i, (x, y) in enumerate(zoo.batches("mlp", 5), start=1):
        loss = F.cross_entropy(model(x), y) * (float("inf") if i == 2 else 1.0)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if call_sparsifier_step:
            sparsifier.step()
        sparsity_after.append(round(sparsifier.current_sparsity(), 2))
    # iteration 2 was skipped: the prune of step 3 happens in iteration 4
    assert sparsity_after == [0.0, 0.0, 0.0, 0.75, 0.75]
    assert sparsifier.step_count == 4


# -- 7. P-GaP without a merge -------------------------------------------------------------------
def test_pgap_without_a_merge_is_an_error_at_the_round_end() -> None:
    """The issue's case: gp.PGaP used from Python without a merger never pruned, silently."""
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    sparsifier = gp.PGaP(model, optimizer, sparsity=0.75, partitions=3, steps_per_phase=2, rounds=1)
    batches = zoo.batches("mlp", 2)
    plain_step(model, optimizer, batches[0])
    assert sparsifier.phase.name == "gap"
    with pytest.raises(RuntimeError, match=r"round 1 ended at step 2 without a merge.*merge_worker_states"):
        plain_step(model, optimizer, batches[1])  # the step that ends the round


def test_pgap_with_an_external_merge_refuses_the_next_step_until_merged() -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    sparsifier = gp.PGaP(
        model, optimizer, sparsity=0.75, partitions=3, steps_per_phase=2, rounds=2, merger="external"
    )
    batches = zoo.batches("mlp", 5)
    for batch in batches[:2]:
        plain_step(model, optimizer, batch)  # the round ends: the caller merges now
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="merge_worker_states"):
        plain_step(model, optimizer, batches[2])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())  # step refused
    assert sparsifier.step_count == 2
    state = model.state_dict()
    merged = gp.merge_worker_states([state, state, state], sparsifier.partition_owner())
    model.load_state_dict(merged)
    sparsifier.finish_merge()
    plain_step(model, optimizer, batches[2])  # now allowed
    assert sparsifier.merged_rounds == 1 and sparsifier.step_count == 3
    with pytest.raises(ValueError, match="merger must be"):
        gp.PGaP(model, optimizer, sparsity=0.75, partitions=3, steps_per_phase=2, merger="later")


# -- found by review: P-GaP resume, fused optimizers under GradScaler, LBFGS, frozen targets --
def test_pgap_resume_in_framework_order_restores_the_cleared_optimizer_state() -> None:
    """P-GaP's construction resets the whole optimizer state (biases' too); building it after the
    optimizer was restored and then loading its state must bring all of it back."""

    def run(save_at: int | None) -> nn.Module:
        data = zoo.batches("mlp", 10)
        kwargs = {"sparsity": 0.75, "partitions": 3, "steps_per_phase": 4, "rounds": 2, "finetune_steps": 2}
        model = zoo.build("mlp", seed=0)
        optimizer = make_optimizer("sgd", model)
        sparsifier = gp.PGaP(model, optimizer, merger=lambda s: None, **kwargs)
        for batch in data[: save_at or len(data)]:
            plain_step(model, optimizer, batch)
        if save_at is None:
            return model
        saved = roundtrip(
            {"model": model.state_dict(), "opt": optimizer.state_dict(), "sp": sparsifier.state_dict()}
        )
        model = zoo.build("mlp", seed=1)
        optimizer = make_optimizer("sgd", model)
        model.load_state_dict(saved["model"], strict=False)
        optimizer.load_state_dict(saved["opt"])
        sparsifier = gp.PGaP(model, optimizer, merger=lambda s: None, **kwargs)
        sparsifier.load_state_dict(saved["sp"])
        assert len(optimizer.state) == len(list(model.parameters()))  # biases' momentum is back
        for batch in data[save_at:]:
            plain_step(model, optimizer, batch)
        return model

    straight_model = run(None)
    for save_at in (3, 6):
        resumed = run(save_at)
        for (name, a), b in zip(straight_model.named_parameters(), resumed.parameters()):
            assert torch.equal(a, b), f"{name} differs after resume at {save_at}"


def test_admm_penalty_is_not_shrunk_by_the_loss_scale_of_a_fused_step() -> None:
    updates = []
    for use_scaler in (False, True):
        model = zoo.build("mlp")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, fused=True)
        admm = gp.ADMM(model, optimizer, sparsity=0.75, admm_steps=5, rho=0.5)
        before = {t.name: t.param.detach().clone() for t in admm.targets}
        x, y = zoo.batches("mlp", 1)[0]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        if use_scaler:
            scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
        else:
            loss.backward()
            optimizer.step()
        updates.append({t.name: t.param.detach() - before[t.name] for t in admm.targets})
    for name, delta in updates[0].items():
        assert torch.allclose(delta, updates[1][name], atol=1e-6), name


def test_lbfgs_history_is_forgotten_at_a_mask_change() -> None:
    """Every closure evaluation inside LBFGS's step must see the sparse model."""
    model = zoo.build("mlp")
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=4)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.75, prune_step=2)
    seen = []
    for x, y in zoo.batches("mlp", 4):

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            if sparsifier.step_count >= 2:
                seen.append(pruned_nonzero(sparsifier))
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        optimizer.step(closure)
    assert seen and max(seen) == 0


@pytest.mark.parametrize("variant", ["set", "rigl", "cgap"])
def test_methods_that_regrow_refuse_frozen_targets(variant: str) -> None:
    model = zoo.build("mlp")
    model.net[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"'net\.0\.weight' is not trained"):
        make_sparsifier(variant, model, make_optimizer("sgd", model))
    assert not any(k.endswith("_mask") for k in model.state_dict())
    overrides = {"partitions": 2} if variant == "cgap" else {}
    make_sparsifier(variant, model, make_optimizer("sgd", model), exclude=["net.0.weight"], **overrides)


def test_pruning_only_methods_accept_frozen_targets() -> None:
    model = zoo.build("mlp")
    model.net[0].weight.requires_grad_(False)
    optimizer = make_optimizer("sgd", model)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.75)
    for batch in zoo.batches("mlp", 3):
        plain_step(model, optimizer, batch)
    assert pruned_nonzero(sparsifier) == 0


def test_masks_changed_between_backward_and_step_apply_to_the_gradients() -> None:
    model, optimizer, sparsifier = oneshot_mlp(lambda m: make_optimizer("adam", m), sparsity=0.5)
    x, y = zoo.batches("mlp", 1)[0]
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()  # gradients masked with the current masks
    with torch.no_grad():
        for mask in sparsifier.masks.values():
            mask[: mask.shape[0] // 2] = False  # a user's own mask edit after backward
    optimizer.step()
    assert pruned_nonzero(sparsifier) == 0
    assert pruned_state_nonzero(sparsifier, optimizer) == 0


def test_a_copied_model_can_drop_its_masks() -> None:
    import copy

    from growprune.sparsity.masks import strip_masks

    model = zoo.build("mlp")
    gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.5)
    clone = copy.deepcopy(model)
    with pytest.raises(ValueError, match="strip_masks"):
        gp.OneShot(clone, make_optimizer("sgd", clone), sparsity=0.5)
    assert strip_masks(clone) == 3
    gp.OneShot(clone, make_optimizer("sgd", clone), sparsity=0.5)


def test_a_target_unfrozen_later_gets_its_gradient_masked_after_backward() -> None:
    """Gradual unfreezing: the layer frozen at construction is hooked once it trains."""
    model = zoo.build("mlp")
    model.net[0].weight.requires_grad_(False)
    optimizer = make_optimizer("sgd", model)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.75)
    batches = zoo.batches("mlp", 4)
    plain_step(model, optimizer, batches[0])
    model.net[0].weight.requires_grad_(True)
    plain_step(model, optimizer, batches[1])  # the pre-step hook notices and hooks it
    x, y = batches[2]
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    grad, mask = model.net[0].weight.grad, sparsifier.masks["net.0.weight"]
    assert grad is not None and (grad[~mask] == 0).all()


def test_optimizer_subclass_calling_super_step_counts_once() -> None:
    """torch runs step hooks in every wrapped ``step`` of the class chain, so a subclass whose
    step() calls super().step() fires them twice; the schedule must still count one step."""
    from tests.methods.harness import LangevinSGD

    model = zoo.build("mlp")
    optimizer = LangevinSGD(model.parameters(), lr=0.05)
    torch.optim.SGD(zoo.build("mlp").parameters(), lr=0.1).step()  # SGD.step is wrapped now too
    sparsifier = gp.RigL(model, optimizer, sparsity=0.8, end_step=20, update_interval=4)
    for step, (x, y) in enumerate(zoo.batches("mlp", 6), start=1):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        assert sparsifier.step_count == step
        for t in sparsifier.targets:
            assert (t.param.detach()[~sparsifier.masks[t.name]] == 0).all()
    assert [(e.event, e.step) for e in sparsifier.history] == [("init", 0), ("drop-grow", 4)]


def test_a_step_that_raised_does_not_confuse_the_next() -> None:
    """A closure that raises leaves the step without its post-hook; the next step counts normally."""
    model = zoo.build("mlp")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.8, prune_step=2)

    def failing() -> torch.Tensor:
        raise RuntimeError("data loader died")

    with pytest.raises(RuntimeError, match="data loader died"):
        optimizer.step(failing)
    for step, (x, y) in enumerate(zoo.batches("mlp", 3), start=1):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        assert sparsifier.step_count == step
    assert [(e.event, e.step) for e in sparsifier.history] == [("prune", 2)]
