"""Masks as bool module buffers: registration, application, cache invalidation, removal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.sparsity.masks import MaskSet, masked_parameters
from growprune.sparsity.targets import find_targets
from tests.methods import zoo
from tests.methods.harness import make_optimizer, train


def test_masks_are_bool_buffers_in_the_model_state_dict() -> None:
    model = zoo.build("transformer")
    sparsifier = gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.5)
    state = model.state_dict()
    for target in sparsifier.targets:
        key = f"{target.name}_mask"
        assert state[key].dtype == torch.bool and state[key].shape == target.shape
        assert state[key] is not None and torch.equal(state[key], sparsifier.masks[target.name])
    # float conversions of the model leave bool masks alone
    model.to(torch.float64)
    assert all(m.dtype == torch.bool for m in sparsifier.masks.values())


def test_masked_parameters_lists_every_masked_weight() -> None:
    model = zoo.build("tied")
    sparsifier = gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.5, targets=zoo.TIED_TARGETS)
    listed = {name: (param, mask) for name, param, mask in masked_parameters(model)}
    assert list(listed) == sparsifier.names
    for target in sparsifier.targets:
        param, mask = listed[target.name]
        assert param is target.param and mask is sparsifier.masks[target.name]


def test_apply_to_weights_and_grads() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    targets = find_targets(model)
    masks = MaskSet(targets)
    new = torch.tensor([[True, False, True, False]] * 3)
    masks.set("0.weight", new)
    before_dense = model[1].weight.detach().clone()
    masks.apply_to_weights()
    assert (model[0].weight[~new] == 0).all() and (model[0].weight[new] != 0).all()
    assert torch.equal(model[1].weight, before_dense)  # all-kept layer untouched
    model(torch.randn(5, 4)).sum().backward()
    masks.apply_to_grads()
    assert (model[0].weight.grad[~new] == 0).all() and (model[0].weight.grad[new] != 0).any()


def test_mask_edited_in_place_takes_effect() -> None:
    """The cached same-dtype masks are rebuilt when a buffer changes, even behind our back."""
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.5)
    train(model, optimizer, sparsifier, zoo.batches("mlp", 2))
    mask = sparsifier.masks["net.2.weight"]
    kept = mask.nonzero()[0].tolist()
    mask[kept[0], kept[1]] = False
    train(model, optimizer, sparsifier, zoo.batches("mlp", 1))
    assert model.net[2].weight[kept[0], kept[1]] == 0


def test_model_state_dict_load_restores_masks() -> None:
    model = zoo.build("mlp")
    sparsifier = gp.OneShot(model, make_optimizer("sgd", model), sparsity=0.5)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    # The saved weights are nonzero where pruned (as a framework's checkpoint of the dense
    # weights would be), so "zero after a step" holds only if the restored masks are applied.
    for name in sparsifier.names:
        saved[name][~saved[f"{name}_mask"]] = 0.5
    other = zoo.build("mlp", seed=9)
    other_sparsifier = gp.OneShot(other, make_optimizer("sgd", other), sparsity=0.5)
    assert not all(torch.equal(other_sparsifier.masks[n], sparsifier.masks[n]) for n in sparsifier.names)
    other.load_state_dict(saved)
    for name in sparsifier.names:
        assert torch.equal(other_sparsifier.masks[name], sparsifier.masks[name])
    train(other, other_sparsifier.optimizer, other_sparsifier, zoo.batches("mlp", 1))
    for name in sparsifier.names:
        param = dict(other.named_parameters())[name]
        assert (param[~other_sparsifier.masks[name]] == 0).all()
        assert (param[other_sparsifier.masks[name]] != 0).any()


def test_set_rejects_wrong_shape_naming_the_layer() -> None:
    model = zoo.build("mlp")
    masks = MaskSet(find_targets(model))
    with pytest.raises(ValueError, match=r"mask for 'net\.0\.weight' has shape \(3,\)"):
        masks.set("net.0.weight", torch.ones(3, dtype=torch.bool))


def test_remove_drops_buffers_and_hook() -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    sparsifier = gp.OneShot(model, optimizer, sparsity=0.5)
    zeros = {n: int((p == 0).sum()) for n, p in model.named_parameters()}
    sparsifier.remove()
    assert not [n for n, _ in model.named_buffers() if n.endswith("_mask")]
    assert {n: int((p == 0).sum()) for n, p in model.named_parameters()} == zeros  # zeros kept
    loss = nn.functional.cross_entropy(model(zoo.batches("mlp", 1)[0][0]), zoo.batches("mlp", 1)[0][1])
    loss.backward()
    optimizer.step()  # the hook no longer masks grads
    assert int((model.net[0].weight == 0).sum()) < zeros["net.0.weight"]
    assert list(masked_parameters(model)) == []


def test_sparse_gradients_are_refused() -> None:
    model = nn.Sequential(nn.Embedding(10, 4, sparse=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    gp.OneShot(model, optimizer, sparsity=0.5, targets=["0.weight"])
    model(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(ValueError, match="sparse gradients"):
        optimizer.step()


def test_overlapping_second_sparsifier_fails_without_registering_anything() -> None:
    model = zoo.build("mlp")
    optimizer = make_optimizer("sgd", model)
    gp.OneShot(model, optimizer, sparsity=0.5, targets=["net.4.weight"])
    with pytest.raises(ValueError, match=r"'net\.4\.weight' already has a mask buffer"):
        gp.OneShot(model, optimizer, sparsity=0.5)  # net.0 and net.2 come first, then the clash
    assert [n for n, _ in model.named_buffers()] == ["net.4.weight_mask"]
