"""Classification datasets by name, so recipes can say ``data.name: fashion_mnist``.

Keyword arguments are checked against the builder's signature up front so a typo in a config
fails with the offending key named, instead of a bare ``TypeError`` from deep inside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from growprune.data.arguments import check_kwargs
from growprune.data.dataset import InMemoryDataset
from growprune.tasks.classification.fashion_mnist import load_fashion_mnist
from growprune.tasks.classification.synthetic import make_synthetic, make_synthetic_images
from growprune.tasks.registry import FALLBACK_TASK, task_for_dataset

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
    if name not in _BUILDERS:
        other = task_for_dataset(name)
        if other.name != FALLBACK_TASK:
            raise ValueError(
                f"{name!r} is a dataset of the {other.name} task, not (x, y) tensors: name it as "
                f"data.name in a recipe (growprune list shows the tasks)"
            )
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(list_datasets())}")
    builder = _BUILDERS[name]
    check_kwargs("dataset", name, builder, kwargs)
    train, test = builder(**kwargs)
    if train_subset is not None:
        train = train.subset(train_subset)
    if test_subset is not None:
        test = test.subset(test_subset)
    return train, test
