"""Datasets by name, so configs and the CLI can say ``dataset: fashion_mnist``.

Keyword arguments are checked against the builder's signature up front so a typo in a config
fails with the offending key named, instead of a bare ``TypeError`` from deep inside.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from growprune.data.dataset import InMemoryDataset
from growprune.data.fashion_mnist import load_fashion_mnist
from growprune.data.synthetic import make_synthetic, make_synthetic_images

__all__ = ["build_datasets", "list_datasets"]

DatasetPair = tuple[InMemoryDataset, InMemoryDataset]

_BUILDERS: dict[str, Callable[..., DatasetPair]] = {
    "fashion_mnist": load_fashion_mnist,
    "synthetic": make_synthetic,
    "synthetic_images": make_synthetic_images,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`build_datasets`, sorted."""
    return sorted(_BUILDERS)


def check_kwargs(kind: str, name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(fn).parameters
    allowed = [
        p
        for p, v in params.items()
        if v.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown argument(s) {', '.join(unknown)} for {kind} {name!r}; accepted: {', '.join(allowed)}"
        )


def build_datasets(
    name: str,
    *,
    train_subset: int | None = None,
    test_subset: int | None = None,
    **kwargs: Any,
) -> DatasetPair:
    """Build ``(train, test)`` for dataset ``name``.

    Args:
        name: one of :func:`list_datasets`.
        train_subset, test_subset: keep only the first N items of each split (smoke runs).
        **kwargs: passed to the builder, e.g. ``data_dir`` for ``fashion_mnist`` or ``n_train``
            / ``seed`` for the synthetic sets.

    Raises:
        ValueError: unknown ``name`` (the message lists the allowed names).
        TypeError: a keyword the builder does not take (the message names it).
    """
    if name == "bible":
        raise ValueError(
            "'bible' is a translation corpus, not (x, y) tensors: use "
            "growprune.data.translation.load_bible_translation, or data.name: bible in a recipe"
        )
    if name == "shapenet_part":
        raise ValueError(
            "'shapenet_part' is a part-segmentation set, not (x, y) tensors: use "
            "growprune.data.partseg.load_part_segmentation, or data.name: shapenet_part in a recipe"
        )
    if name not in _BUILDERS:
        raise ValueError(
            f"unknown dataset {name!r}; allowed: {', '.join(list_datasets())}, bible, shapenet_part"
        )
    builder = _BUILDERS[name]
    check_kwargs("dataset", name, builder, kwargs)
    train, test = builder(**kwargs)
    if train_subset is not None:
        train = train.subset(train_subset)
    if test_subset is not None:
        test = test.subset(test_subset)
    return train, test
