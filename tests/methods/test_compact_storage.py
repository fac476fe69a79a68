"""Compact storage (``storage="compact"``) against masked storage, over the method grid.

Same seed, same data: every method must choose the same masks and see the same losses (to float
round-off) whichever way its pruned layers are held, while compact layers really hold only their
kept values (and the optimizer state for those only). The reference is always a masked-storage
run of the same method, never the compact code itself.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.sparsity.compact import GrowthCandidates, compact_state, is_compact
from tests.methods import zoo
from tests.methods.harness import STEPS, VARIANTS, loss_of, make_optimizer, make_sparsifier

COMPACT_VARIANTS = [v for v in VARIANTS if v != "dense"]


def run(
    case: str,
    variant: str,
    optimizer_kind: str,
    storage: str,
    steps: int = STEPS,
    accumulate: int = 1,
) -> tuple[list[float], list[dict[str, torch.Tensor]], nn.Module, gp.Sparsifier, torch.optim.Optimizer]:
    """The README's loop; the loss and the masks after every step."""
    model = zoo.build(case)
    optimizer = make_optimizer(optimizer_kind, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers left dense by default, MHA kept masked
        sparsifier = make_sparsifier(variant, model, optimizer, storage=storage, **zoo.CASES[case].kwargs)
    losses, masks = [], []
    data = zoo.batches(case, steps * accumulate)
    for step in range(steps):
        optimizer.zero_grad()
        total = 0.0
        for micro in range(accumulate):
            loss = loss_of(model, data[step * accumulate + micro]) / accumulate
            loss.backward()
            total += loss.item()
        optimizer.step()
        sparsifier.step()
        losses.append(total)
        masks.append({n: m.clone() for n, m in sparsifier.masks.items()})
    return losses, masks, model, sparsifier, optimizer


def assert_same_run(masked: tuple, compact: tuple) -> None:
    losses_m, masks_m, model_m, *_ = masked
    losses_c, masks_c, model_c, *_ = compact
    for step, (a, b) in enumerate(zip(masks_m, masks_c)):
        for name in a:
            assert torch.equal(a[name], b[name]), f"masks of {name} differ after step {step + 1}"
    torch.testing.assert_close(torch.tensor(losses_c), torch.tensor(losses_m), rtol=1e-4, atol=1e-5)
    dense_m, dense_c = model_m.state_dict(), model_c.state_dict()
    assert dense_m.keys() == dense_c.keys()
    for key in dense_m:
        torch.testing.assert_close(dense_c[key], dense_m[key], rtol=1e-4, atol=1e-5, msg=key)


def assert_compact_where_sparse(sparsifier: gp.Sparsifier, optimizer: torch.optim.Optimizer) -> None:
    """A compactable layer whose mask prunes anything holds its kept values only, and so does
    its optimizer state."""
    held = 0
    for target in sparsifier.targets:
        mask = sparsifier.masks[target.name]
        if type(target.module) not in (nn.Linear, nn.Conv1d, nn.Conv2d) or len(target.aliases) > 1:
            assert not is_compact(target.module)
            continue
        if bool(mask.all()):
            assert not is_compact(target.module) and target.param.shape == mask.shape
            continue
        held += 1
        assert is_compact(target.module)
        assert target.param.shape == (int(mask.sum()),), target.name
        for value in optimizer.state.get(target.param, {}).values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                assert value.shape == target.param.shape, target.name
    assert held > 0, "no layer was held compactly"


@pytest.mark.parametrize("optimizer_kind", ["sgd", "adam"])
@pytest.mark.parametrize("variant", COMPACT_VARIANTS)
def test_compact_equals_masked_over_the_method_grid(variant: str, optimizer_kind: str) -> None:
    masked = run("mlp", variant, optimizer_kind, "masked")
    compact = run("mlp", variant, optimizer_kind, "compact")
    assert_same_run(masked, compact)
    assert_compact_where_sparse(compact[3], compact[4])


@pytest.mark.parametrize("case", ["cnn_bn", "conv1d_depthwise", "transformer"])
@pytest.mark.parametrize("variant", ["cgap", "rigl", "gmp"])
def test_compact_equals_masked_on_conv_and_attention_models(case: str, variant: str) -> None:
    """Conv layers are held compactly; MultiheadAttention's raw in_proj_weight stays masked
    (said in a warning) beside compact out_proj layers."""
    masked = run(case, variant, "adam", "masked")
    compact = run(case, variant, "adam", "compact")
    assert_same_run(masked, compact)


def test_layers_compact_storage_cannot_hold_are_named_in_a_warning() -> None:
    model = zoo.build("transformer")
    optimizer = make_optimizer("adam", model)
    kept_masked = r"stay in masked storage: .*in_proj_weight \(MultiheadAttention\), .*out_proj.weight \("
    with pytest.warns(UserWarning, match=kept_masked + "NonDynamicallyQuantizableLinear"):
        make_sparsifier("cgap", model, optimizer, storage="compact")


@pytest.mark.parametrize("variant", ["rigl", "set", "cgap"])
def test_gradient_accumulation_gives_the_same_masks(variant: str) -> None:
    """RigL's dense gradient is summed over the backward passes of a step in compact storage too."""
    masked = run("mlp", variant, "adam", "masked", accumulate=3)
    assert_same_run(masked, run("mlp", variant, "adam", "compact", accumulate=3))


def test_rigl_gathers_candidates_not_dense_gradients() -> None:
    """One backward pass per step: at an update step a compact layer holds the candidates it
    could grow (as many as it drops), never its dense gradient."""
    model = zoo.build("mlp")
    optimizer = make_optimizer("adam", model)
    sparsifier = make_sparsifier("rigl", model, optimizer, storage="compact")
    data = zoo.batches("mlp", 4)
    for step in range(4):  # update_interval 4: step 4 is the first update
        optimizer.zero_grad()
        loss_of(model, data[step]).backward()
        states = [compact_state(t.module) for t in sparsifier.targets if is_compact(t.module)]
        assert states
        for state in states:
            if step < 3:
                assert state.gathered is None
            else:
                assert isinstance(state.gathered, GrowthCandidates)
                assert state.gathered.count == round(sparsifier.fraction_at(4) * state.gathered.kept.numel())
        optimizer.step()
    assert [e.event for e in sparsifier.history] == ["init", "drop-grow"]


def test_rigl_learns_gradient_accumulation_at_a_first_update() -> None:
    """Updating at step 1 with two backward passes: the pass count is unknown yet, so that update
    ranks the first pass's candidates (said in a warning); later updates read the summed dense
    gradient."""
    model = zoo.build("mlp")
    optimizer = make_optimizer("adam", model)
    sparsifier = make_sparsifier("rigl", model, optimizer, storage="compact", update_interval=1)
    data = zoo.batches("mlp", 6)
    with pytest.warns(UserWarning, match="gradient accumulation seen by a compact layer"):
        for step in range(3):
            optimizer.zero_grad()
            for micro in range(2):
                loss_of(model, data[2 * step + micro]).backward()
            if step > 0:
                gathered = [
                    compact_state(t.module).gathered for t in sparsifier.targets if is_compact(t.module)
                ]
                assert gathered and all(isinstance(g, torch.Tensor) for g in gathered)
            optimizer.step()


def test_unknown_storage_is_refused() -> None:
    model = zoo.build("mlp")
    with pytest.raises(ValueError, match="storage must be one of masked, compact, got 'sparse'"):
        gp.CGaP(model, make_optimizer("adam", model), storage="sparse", steps_per_phase=2, rounds=1)


def _resume(variant: str, before: str, after: str, split: int, order: str) -> tuple:
    """Train `split` steps in one storage, save model/optimizer/sparsifier state, rebuild
    everything fresh and go on to STEPS in the other; the record of the whole run."""
    first = run("mlp", variant, "adam", before, steps=split)
    _, masks_before, model, sparsifier, optimizer = first
    saved = {
        "model": copy.deepcopy(model.state_dict()),
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "sparsifier": copy.deepcopy(sparsifier.state_dict()),
    }
    model = zoo.build("mlp", seed=99)  # other weights: everything must come from the files
    optimizer = make_optimizer("adam", model)
    method, kwargs = VARIANTS[variant]
    args: dict[str, Any] = {"sparsity": 0.75, "seed": 0, **kwargs, "storage": after}
    if order == "framework":  # Lightning / the Trainer: model and optimizer first, then the sparsifier
        model.load_state_dict({k: v for k, v in saved["model"].items() if not k.endswith("_mask")})
        optimizer.load_state_dict(saved["optimizer"])
        sparsifier = gp.get_method(method)(model, optimizer, state=saved["sparsifier"], **args)
    elif order == "build-then-load":  # the saved state loaded after construction pruned the weights:
        # construction's changes are undone first (in compact storage from a spilled copy)
        model.load_state_dict({k: v for k, v in saved["model"].items() if not k.endswith("_mask")})
        optimizer.load_state_dict(saved["optimizer"])
        sparsifier = gp.get_method(method)(model, optimizer, **args)
        sparsifier.load_state_dict(saved["sparsifier"])
    else:  # growprune's engine: sparsifier first, then model, optimizer, sparsifier state
        sparsifier = gp.get_method(method)(model, optimizer, **args)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        sparsifier.load_state_dict(saved["sparsifier"])
    data = zoo.batches("mlp", STEPS)
    losses, masks = list(first[0]), list(masks_before)
    for step in range(split, STEPS):
        optimizer.zero_grad()
        loss = loss_of(model, data[step])
        loss.backward()
        optimizer.step()
        sparsifier.step()
        losses.append(loss.item())
        masks.append({n: m.clone() for n, m in sparsifier.masks.items()})
    return losses, masks, model, sparsifier, optimizer


@pytest.mark.parametrize("order", ["engine", "framework", "build-then-load"])
@pytest.mark.parametrize(
    ("variant", "before", "after"),
    [
        ("cgap_keep_state", "compact", "compact"),
        ("rigl", "compact", "compact"),
        ("gmp", "compact", "compact"),
        ("cgap_keep_state", "masked", "compact"),
        ("rigl", "compact", "masked"),
    ],
)
def test_resume_equals_the_uninterrupted_run(variant: str, before: str, after: str, order: str) -> None:
    """Checkpoints keep their format (dense weights; the optimizer state of a compact layer is
    its values' state), so a run resumes exactly, in the same storage or the other."""
    uninterrupted = run("mlp", variant, "adam", "masked")
    resumed = _resume(variant, before, after, split=11, order=order)
    assert_same_run(uninterrupted, resumed)
    if after == "compact":
        assert_compact_where_sparse(resumed[3], resumed[4])


def test_report_export_and_remove_see_the_dense_model(tmp_path: Any) -> None:
    masked = run("mlp", "cgap", "adam", "masked")
    compact = run("mlp", "cgap", "adam", "compact")
    assert str(gp.sparsity_report(compact[2])) == str(gp.sparsity_report(masked[2]))
    for name, result in (("masked", masked), ("compact", compact)):
        gp.export_model(result[2], tmp_path / f"{name}.safetensors")
    loaded_m = gp.load(tmp_path / "masked.safetensors", model=zoo.build("mlp", seed=5))
    loaded_c = gp.load(tmp_path / "compact.safetensors", model=zoo.build("mlp", seed=6))
    for key, value in loaded_m.state_dict().items():
        torch.testing.assert_close(loaded_c.state_dict()[key], value, rtol=1e-4, atol=1e-5, msg=key)
    compact[3].remove()
    masked[3].remove()
    assert not any(is_compact(module) for module in compact[2].modules())
    for key, value in masked[2].state_dict().items():
        torch.testing.assert_close(compact[2].state_dict()[key], value, rtol=1e-4, atol=1e-5, msg=key)
    # an ordinary model again: dense optimizer state, and it trains
    optimizer = compact[4]
    for param in compact[2].parameters():
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                assert value.shape == param.shape
    loss_of(compact[2], zoo.batches("mlp", 1)[0]).backward()
    optimizer.step()


def test_compact_layers_hold_no_mask_buffer_yet_every_reader_sees_the_masks() -> None:
    """A mask would repeat what compact storage says (1 byte per weight), so a layer compact
    storage holds keeps an empty buffer; the sparsifier, ``state_dict()`` and
    :func:`masked_parameters` still give the masks of the masked-storage run, and a mask loaded
    into the model is followed, then held by the storage again after the next step."""
    from growprune.sparsity.masks import masked_parameters

    masked = run("mlp", "cgap", "adam", "masked")
    compact = run("mlp", "cgap", "adam", "compact")
    model, sparsifier, optimizer = compact[2], compact[3], compact[4]
    mask_bytes = {
        storage: sum(b.numel() for n, b in result[2].named_buffers() if n.endswith("_mask"))
        for storage, result in (("masked", masked), ("compact", compact))
    }
    assert mask_bytes["masked"] > 0 and mask_bytes["compact"] == 0, mask_bytes
    state_m, state_c = masked[2].state_dict(), model.state_dict()
    mask_keys = [k for k in state_m if k.endswith("_mask")]
    assert mask_keys and [k for k in state_c if k.endswith("_mask")] == mask_keys
    for key in mask_keys:
        assert state_c[key].dtype == torch.bool and torch.equal(state_c[key], state_m[key]), key
    readers = {name: mask for name, _, mask in masked_parameters(model)}
    for name, mask in sparsifier.masks.items():
        assert torch.equal(readers[name], mask) and torch.equal(mask, state_m[f"{name}_mask"]), name

    target = next(t for t in sparsifier.targets if is_compact(t.module))
    loaded = state_c[f"{target.name}_mask"].clone()
    loaded.view(-1)[loaded.view(-1).nonzero()[:3]] = False  # prune three more weights
    model.load_state_dict({**state_c, f"{target.name}_mask": loaded})
    assert torch.equal(sparsifier.masks[target.name], loaded)
    events = len(sparsifier.history)
    optimizer.zero_grad()
    loss_of(model, zoo.batches("mlp", 1)[0]).backward()
    optimizer.step()
    sparsifier.step()
    assert len(sparsifier.history) == events, "a mask change of the schedule would hide the check"
    assert getattr(target.module, f"{target.leaf}_mask").numel() == 0
    assert target.param.shape == (int(loaded.sum()),)
    assert torch.equal(sparsifier.masks[target.name], loaded)
    sparsifier.remove()
    assert not [n for n, _ in model.named_buffers() if n.endswith("_mask")]


@pytest.mark.parametrize("persistent", [True, False])
def test_export_of_a_compact_model_reads_the_masks_its_storage_holds(tmp_path: Any, persistent: bool) -> None:
    """Exporting the live model finds its masks whether they are in its state dict or only attached
    to its modules (the callbacks' ``persistent_masks=False``), held by compact storage or not."""
    results = {}
    for storage in ("masked", "compact"):
        model = zoo.build("mlp")
        optimizer = make_optimizer("adam", model)
        sparsifier = make_sparsifier("rigl", model, optimizer, storage=storage, persistent_masks=persistent)
        for batch in zoo.batches("mlp", 3):
            optimizer.zero_grad()
            loss_of(model, batch).backward()
            optimizer.step()
            sparsifier.step()
        path = tmp_path / f"{storage}-{persistent}.safetensors"
        gp.export_model(model, path)
        results[storage] = (gp.load(path, model=zoo.build("mlp", seed=3)), str(gp.sparsity_report(model)))
    assert results["compact"][1] == results["masked"][1]
    masked_state, compact_state_ = results["masked"][0].state_dict(), results["compact"][0].state_dict()
    assert masked_state.keys() == compact_state_.keys()
    for key, value in masked_state.items():
        torch.testing.assert_close(compact_state_[key], value, rtol=1e-4, atol=1e-5, msg=key)
