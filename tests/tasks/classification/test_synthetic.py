"""Synthetic datasets: seeded, well-formed, and learnable by small models in seconds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from growprune.data import TensorLoader
from growprune.tasks.classification.cnn import SmallCNN
from growprune.tasks.classification.mlp import MLP
from growprune.tasks.classification.synthetic import make_synthetic, make_synthetic_images


def _fit(model: torch.nn.Module, train, epochs: int, lr: float, batch_size: int) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = TensorLoader.from_dataset(train, batch_size, shuffle=True, seed=0)
    model.train()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()


@torch.no_grad()
def _accuracy(model: torch.nn.Module, ds) -> float:
    model.eval()
    return (model(ds.x).argmax(1) == ds.y).float().mean().item()


def test_shapes_and_dtypes() -> None:
    train, test = make_synthetic(n_train=100, n_test=30, num_classes=4, dim=7)
    assert train.x.shape == (100, 7) and test.x.shape == (30, 7)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert int(train.y.min()) >= 0 and int(train.y.max()) < 4 and train.num_classes == 4
    train, test = make_synthetic_images(n_train=20, n_test=10, channels=3, height=12, width=10)
    assert train.x.shape == (20, 3, 12, 10) and test.input_shape == (3, 12, 10)


@pytest.mark.parametrize("make", [make_synthetic, make_synthetic_images])
def test_seeded(make) -> None:
    a_train, a_test = make(n_train=50, n_test=20, seed=1)
    b_train, b_test = make(n_train=50, n_test=20, seed=1)
    c_train, _ = make(n_train=50, n_test=20, seed=2)
    assert torch.equal(a_train.x, b_train.x) and torch.equal(a_test.y, b_test.y)
    assert not torch.equal(a_train.x, c_train.x)
    # The test split does not depend on the train size.
    _, d_test = make(n_train=80, n_test=20, seed=1)
    assert torch.equal(a_test.x, d_test.x)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_synthetic(num_classes=1)
    with pytest.raises(ValueError):
        make_synthetic(n_train=0)
    with pytest.raises(ValueError):
        make_synthetic_images(height=2)


@pytest.mark.trajectory
def test_mlp_learns_synthetic_but_linear_model_does_not() -> None:
    """High MLP accuracy shows training works; the linear gap shows the task is nonlinear."""
    train, test = make_synthetic(seed=0)
    mlp = MLP(train.input_shape[0], hidden=(64,), num_classes=train.num_classes)
    _fit(mlp, train, epochs=6, lr=1e-2, batch_size=128)
    assert _accuracy(mlp, test) > 0.95
    linear = MLP(train.input_shape[0], hidden=(), num_classes=train.num_classes)
    _fit(linear, train, epochs=6, lr=1e-2, batch_size=128)
    assert _accuracy(linear, test) < 0.9


@pytest.mark.trajectory
def test_small_cnn_learns_synthetic_images() -> None:
    train, test = make_synthetic_images(n_train=1000, n_test=300, height=16, width=16, seed=0)
    cnn = SmallCNN(in_channels=1, num_classes=train.num_classes, width=8)
    _fit(cnn, train, epochs=3, lr=3e-3, batch_size=64)
    assert _accuracy(cnn, test) > 0.9
