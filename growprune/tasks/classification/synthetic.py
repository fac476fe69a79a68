"""Seeded synthetic classification problems for fast tests.

Tests of pruning schedules and the training engine need a problem that (a) a small model
learns to high accuracy in seconds, so "training works" is checkable, and (b) is not linearly
separable, so that removing the wrong weights visibly hurts. Both generators below are Gaussian
mixtures with several clusters per class (vectors) or class templates under random shifts and
noise (images). Train and test samples come from separate random streams of the same
distribution, so changing ``n_train`` does not change the test set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from growprune.data.dataset import InMemoryDataset
from growprune.data.loader import Augment
from growprune.seeding import stream_seed

__all__ = ["make_synthetic", "make_synthetic_images"]

_STREAM_PARAMS, _STREAM_TRAIN, _STREAM_TEST = 0, 1, 2


def _gen(seed: int, stream: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(stream_seed(seed, stream))
    return g


def _check(n_train: int, n_test: int, num_classes: int) -> None:
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train}, {n_test}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")


def make_synthetic(
    n_train: int = 4000,
    n_test: int = 1000,
    num_classes: int = 10,
    dim: int = 16,
    clusters_per_class: int = 4,
    class_sep: float = 2.0,
    seed: int = 0,
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Vector data (N, dim): each class is a mixture of ``clusters_per_class`` unit Gaussians.

    Each coordinate of a cluster center is N(0, class_sep^2), which keeps the Bayes error small
    for the defaults while still requiring a nonlinear decision boundary when
    ``clusters_per_class > 1``.
    """
    _check(n_train, n_test, num_classes)
    if dim < 1 or clusters_per_class < 1:
        raise ValueError("dim and clusters_per_class must be >= 1")
    g = _gen(seed, _STREAM_PARAMS)
    centers = torch.randn(num_classes, clusters_per_class, dim, generator=g) * class_sep

    def sample(n: int, stream: int) -> InMemoryDataset:
        gs = _gen(seed, stream)
        y = torch.randint(0, num_classes, (n,), generator=gs)
        k = torch.randint(0, clusters_per_class, (n,), generator=gs)
        x = centers[y, k] + torch.randn(n, dim, generator=gs)
        return InMemoryDataset(x, y, num_classes=num_classes, name="synthetic")

    return sample(n_train, _STREAM_TRAIN), sample(n_test, _STREAM_TEST)


def make_synthetic_images(
    n_train: int = 2000,
    n_test: int = 500,
    num_classes: int = 10,
    channels: int = 1,
    height: int = 28,
    width: int = 28,
    noise: float = 1.0,
    max_shift: int = 2,
    seed: int = 0,
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Image data (N, channels, height, width): smooth per-class templates, randomly shifted by
    up to ``max_shift`` pixels and with Gaussian pixel noise of std ``noise``.

    Templates are low-resolution noise upsampled bilinearly, so they have spatial structure a
    CNN can exploit; the random shifts reward translation invariance.
    """
    _check(n_train, n_test, num_classes)
    if channels < 1 or height < 4 or width < 4:
        raise ValueError("need channels >= 1 and height, width >= 4")
    if max_shift < 0 or noise < 0:
        raise ValueError("max_shift and noise must be >= 0")
    g = _gen(seed, _STREAM_PARAMS)
    low = torch.randn(num_classes, channels, max(height // 4, 2), max(width // 4, 2), generator=g)
    templates = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    templates = (templates - templates.mean(dim=(1, 2, 3), keepdim=True)) / templates.std(
        dim=(1, 2, 3), keepdim=True
    )
    shift = Augment(crop_padding=max_shift)

    def sample(n: int, stream: int) -> InMemoryDataset:
        gs = _gen(seed, stream)
        y = torch.randint(0, num_classes, (n,), generator=gs)
        x = shift(templates[y], gs)
        x = x + noise * torch.randn(x.shape, generator=gs)
        return InMemoryDataset(x, y, num_classes=num_classes, name="synthetic_images")

    return sample(n_train, _STREAM_TRAIN), sample(n_test, _STREAM_TEST)
