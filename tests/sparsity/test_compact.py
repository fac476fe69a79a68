"""Compact storage of one layer: the same numbers as masked storage, kept values only.

Every expectation is computed by an ordinary dense layer whose weight was multiplied by the
mask (masked storage, the reference), never by the compact code itself.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from growprune.sparsity import compact
from growprune.sparsity.compact import (
    CompactStorageError,
    dense_weight,
    densify,
    gather,
    is_compact,
    make_compact,
    make_dense,
    mask_of,
    positions_of,
)
from growprune.sparsity.patterns import topk_mask


def pair(module: nn.Module, density: float, seed: int = 0) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """(compact layer, masked reference layer, mask) holding the same kept weights."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(module.weight.shape, generator=gen) < density
    reference = copy.deepcopy(module)
    with torch.no_grad():
        reference.weight.mul_(mask)
    make_compact(module, mask)
    return module, reference, mask


LAYERS = {
    "linear": (lambda: nn.Linear(20, 30), (5, 7, 20)),
    "linear-no-bias": (lambda: nn.Linear(16, 8, bias=False), (4, 16)),
    "conv1d": (lambda: nn.Conv1d(3, 5, 3, stride=2), (2, 3, 11)),
    "conv2d-groups-reflect": (
        lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2, padding_mode="reflect"),
        (2, 4, 8, 8),
    ),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2, bias=False), (1, 2, 4, 4, 4)),
}


@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_forward_and_backward_equal_masked_storage(kind: str, density: float) -> None:
    torch.manual_seed(1)
    build, shape = LAYERS[kind]
    layer, reference, mask = pair(build(), density)
    x = torch.randn(shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out, out_ref = layer(x), reference(x_ref)
    torch.testing.assert_close(out, out_ref)
    (out.square().sum()).backward()
    (out_ref.square().sum()).backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    assert layer.weight.shape == (int(mask.sum()),)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad[mask])
    if reference.bias is not None:
        torch.testing.assert_close(layer.bias.grad, reference.bias.grad)


@pytest.mark.parametrize("block", [1, 7, 40, 1 << 22])
def test_weight_gradient_in_row_blocks_is_the_same(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gradient is built a block of output rows at a time; any block size gives the same."""
    monkeypatch.setattr(compact, "GRAD_BLOCK_ELEMENTS", block)
    torch.manual_seed(2)
    layer, reference, mask = pair(nn.Linear(9, 13), 0.4, seed=3)
    x = torch.randn(6, 9)
    layer(x).sum().backward()
    reference(x).sum().backward()
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad[mask])


def test_same_parameter_object_and_optimizer_state_follow() -> None:
    """The optimizer keeps its Parameter; Adam's moments are gathered, then scattered back with
    zeros where nothing was kept (a regrown weight starts at value 0 and state 0)."""
    torch.manual_seed(3)
    layer = nn.Linear(8, 6)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    layer(torch.randn(4, 8)).sum().backward()
    optimizer.step()
    param = layer.weight
    before = {k: v.clone() for k, v in optimizer.state[param].items() if torch.is_tensor(v) and v.dim() == 2}
    mask = torch.rand(6, 8) < 0.5
    make_compact(layer, mask, optimizer)
    assert layer.weight is param and optimizer.param_groups[0]["params"][0] is param
    for key, value in before.items():
        torch.testing.assert_close(optimizer.state[param][key], value[mask])
    make_dense(layer, optimizer)
    assert layer.weight is param and param.shape == (6, 8) and not is_compact(layer)
    for key, value in before.items():
        torch.testing.assert_close(optimizer.state[param][key], value * mask)


def test_training_compact_equals_training_masked() -> None:
    """Adam steps on a two-layer net: the same losses and weights as masked storage."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    reference = copy.deepcopy(net)
    masks = [torch.rand(m.weight.shape) < 0.3 for m in (net[0], net[2])]
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    opt_ref = torch.optim.Adam(reference.parameters(), lr=0.01)
    for layer, mask in zip((net[0], net[2]), masks):
        make_compact(layer, mask, opt)
    with torch.no_grad():
        for layer, mask in zip((reference[0], reference[2]), masks):
            layer.weight.mul_(mask)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    for _ in range(5):
        for model, optimizer in ((net, opt), (reference, opt_ref)):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if model is reference:
                with torch.no_grad():
                    for layer, mask in zip((reference[0], reference[2]), masks):
                        layer.weight.mul_(mask)
                ref_loss = loss
            else:
                compact_loss = loss
        torch.testing.assert_close(compact_loss, ref_loss)
    for layer, ref in zip((net[0], net[2]), (reference[0], reference[2])):
        torch.testing.assert_close(dense_weight(layer), ref.weight.detach())


def test_state_dict_is_dense_and_loads_dense() -> None:
    """Files keep their format: the dense weight under its usual name, in and out."""
    torch.manual_seed(5)
    layer, reference, mask = pair(nn.Linear(5, 4), 0.5)
    state = layer.state_dict()
    assert state["weight"].shape == (4, 5) and torch.equal(state["weight"], reference.weight.detach())
    other = torch.randn(4, 5)
    layer.load_state_dict({"weight": other, "bias": torch.zeros(4)})
    # held whole, as masked storage holds a loaded weight until its sparsifier masks it
    torch.testing.assert_close(dense_weight(layer), other)


def test_load_takes_the_mask_loaded_with_the_weight_and_moves_the_optimizer_state() -> None:
    """A checkpoint's dense weight and mask: the layer holds the mask's positions plus the
    weight's nonzeros; Adam's state of positions kept before and after is carried over."""
    torch.manual_seed(6)
    layer = nn.Linear(6, 5)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    layer(torch.randn(3, 6)).sum().backward()
    optimizer.step()
    old_mask = torch.rand(5, 6) < 0.5
    new_mask = torch.rand(5, 6) < 0.5
    layer.register_buffer("weight_mask", old_mask.clone())
    moment = optimizer.state[layer.weight]["exp_avg"].clone()
    make_compact(layer, old_mask, optimizer, mask_buffer="weight_mask")
    saved = torch.randn(5, 6) * new_mask
    layer.load_state_dict({"weight": saved, "bias": torch.zeros(5), "weight_mask": new_mask})
    assert layer.weight.shape == (int(new_mask.sum()),)
    torch.testing.assert_close(dense_weight(layer), saved)
    state = optimizer.state[layer.weight]["exp_avg"]
    torch.testing.assert_close(densify(state, compact.compact_state(layer).positions(layer), (5, 6)),
                               moment * old_mask * new_mask)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 2**16), a=st.floats(0, 1), b=st.floats(0, 1))
def test_remap_equals_going_through_the_dense_tensor(n: int, seed: int, a: float, b: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    old_mask, new_mask = torch.rand(n, generator=gen) < a, torch.rand(n, generator=gen) < b
    dense = torch.randn(n, generator=gen) * old_mask
    old, new = positions_of(old_mask), positions_of(new_mask)
    expected = gather(densify(gather(dense, old), old, (n,)), new)
    assert torch.equal(compact.remap(gather(dense, old), old, new), expected)


@pytest.mark.parametrize("kind", ["linear", "conv2d-groups-reflect"])
def test_captured_dense_gradient_is_the_masked_layers_gradient(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What RigL reads at an update step when it needs the whole dense gradient (gradient
    accumulation): the dense weight gradient, summed over backward passes until zero_grad,
    equal to the gradient of the masked layer."""
    monkeypatch.setattr(compact, "GRAD_BLOCK_ELEMENTS", 7)  # several row blocks
    torch.manual_seed(7)
    build, shape = LAYERS[kind]
    layer, reference, mask = pair(build(), 0.4)
    state = compact.compact_state(layer)
    state.read = compact.ReadDenseGradient(None)
    for _ in range(2):  # gradient accumulation
        x = torch.randn(shape)
        layer(x).square().sum().backward()
        reference(x).square().sum().backward()
    torch.testing.assert_close(state.gathered, reference.weight.grad)
    assert state.accumulated
    layer.weight.grad = None  # zero_grad(set_to_none=True): a new accumulation starts
    reference.weight.grad = None
    x = torch.randn(shape)
    layer(x).sum().backward()
    reference(x).sum().backward()
    torch.testing.assert_close(state.gathered, reference.weight.grad)


@pytest.mark.parametrize("kind", ["linear", "conv2d-groups-reflect"])
def test_growth_candidates_rank_as_the_dense_gradient(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """RigL's read in one backward pass: the `count` largest pruned gradients and the kept ones,
    which give the masked layer's |gradient| at each of those positions."""
    monkeypatch.setattr(compact, "GRAD_BLOCK_ELEMENTS", 7)
    torch.manual_seed(3)
    build, shape = LAYERS[kind]
    layer, reference, mask = pair(build(), 0.4)
    state = compact.compact_state(layer)
    state.read = compact.ReadDenseGradient(5)
    x = torch.randn(shape)
    layer(x).square().sum().backward()
    reference(x).square().sum().backward()
    record = state.gathered
    assert isinstance(record, compact.GrowthCandidates) and not state.accumulated
    full = reference.weight.grad.abs()
    expected = torch.zeros_like(full)
    expected[mask] = full[mask]
    pruned = full.masked_fill(mask, -1.0).reshape(-1)
    top = topk_mask(pruned, 5)
    expected.view(-1)[top] = pruned[top]
    torch.testing.assert_close(record.dense(), expected)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    block=st.integers(1, 20),
    seed=st.integers(0, 2**16),
    levels=st.integers(1, 4),
    data=st.data(),
)
def test_growth_candidates_choose_what_the_dense_gradient_would(
    rows: int, cols: int, block: int, seed: int, levels: int, data: st.DataObject
) -> None:
    """Property: fed the dense gradient block by block (ties made likely by few levels), the
    candidates give the same top-`moved` growth as the dense gradient, for any kept set and any
    survivors among it -- RigL's update without the dense gradient."""
    gen = torch.Generator().manual_seed(seed)
    grad = torch.randint(-levels, levels + 1, (rows, cols), generator=gen).float()
    mask = torch.rand(rows, cols, generator=gen) < 0.5
    kept = int(mask.sum())
    moved = data.draw(st.integers(0, min(kept, rows * cols - kept) if kept else 0))
    kept_flat = mask.reshape(-1).nonzero().squeeze(1)
    survivors = torch.zeros(rows * cols, dtype=torch.bool)
    survivors[kept_flat[torch.randperm(kept, generator=gen)[: kept - moved]]] = True
    survivors = survivors.view(rows, cols)
    positions = positions_of(mask)
    record = compact.GrowthCandidates(moved, positions, torch.Size((rows, cols)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compact, "GRAD_BLOCK_ELEMENTS", block)
        kept_grad = compact._gathered_grad(lambda r0, r1: grad[r0:r1], positions, rows, cols, record)
    torch.testing.assert_close(kept_grad, gather(grad, positions))
    chosen = topk_mask(record.dense().masked_fill(survivors, -1.0), moved)
    assert torch.equal(chosen, topk_mask(grad.abs().masked_fill(survivors, -1.0), moved))


def test_layers_it_cannot_run_are_refused_by_name() -> None:
    with pytest.raises(CompactStorageError, match="not Embedding"):
        make_compact(nn.Embedding(10, 4), torch.ones(10, 4, dtype=torch.bool))
    with pytest.raises(CompactStorageError, match="mask of shape"):
        make_compact(nn.Linear(3, 2), torch.ones(3, 2, dtype=torch.bool))


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    density=st.floats(0, 1),
)
def test_positions_round_trip(shape: list[int], seed: int, density: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=gen) < density
    dense = torch.randn(shape, generator=gen) * mask
    positions = positions_of(mask)
    assert positions.dtype == torch.int32 and bool((positions[1:] > positions[:-1]).all())
    assert torch.equal(mask_of(positions, mask.shape), mask)
    assert torch.equal(densify(gather(dense, positions), positions, mask.shape), dense)


@pytest.mark.parametrize("setting", ["1", "0"])
def test_compact_storage_fixes_the_malloc_threshold_unless_told_not_to(setting: str) -> None:
    """glibc's moving mmap threshold would keep freed kept-value blocks in the heap; compact
    storage fixes it once per process, and GROWPRUNE_MALLOC_TUNING=0 leaves malloc alone."""
    import os
    import subprocess
    import sys

    script = (
        "import torch, growprune as gp\n"
        "from growprune.sparsity import compact\n"
        "assert not compact._malloc_tuned\n"
        "m = torch.nn.Linear(8, 8)\n"
        "gp.GMP(m, torch.optim.SGD(m.parameters(), lr=0.1), sparsity=0.5, start_step=1, end_step=2,\n"
        "       frequency=1, storage='compact')\n"
        "print(compact._malloc_tuned)\n"
    )
    env = {**os.environ, "GROWPRUNE_MALLOC_TUNING": setting}
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = "True" if setting == "1" and sys.platform.startswith("linux") else "False"
    assert result.stdout.strip() == expected
