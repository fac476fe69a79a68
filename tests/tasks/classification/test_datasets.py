"""build_datasets / list_datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from growprune.data import DatasetNotFoundError
from growprune.tasks.classification import fashion_mnist as fm
from growprune.tasks.classification.datasets import build_datasets, list_datasets
from tests.helpers import check_misspelled_keyword, check_unknown_name


def test_list() -> None:
    assert list_datasets() == ["fashion_mnist", "synthetic", "synthetic_images"]


def test_unknown_name_lists_allowed() -> None:
    check_unknown_name(build_datasets, "dataset", "cifar10", list_datasets())


def test_bad_kwarg_is_named() -> None:
    check_misspelled_keyword(build_datasets, "synthetic", "n_trian", "n_train")


def test_kwargs_and_subsets() -> None:
    train, test = build_datasets("synthetic", n_train=50, n_test=40, dim=5, train_subset=10, test_subset=100)
    assert train.x.shape == (10, 5) and len(test) == 40
    train, _ = build_datasets("synthetic_images", n_train=8, n_test=4, height=8, width=8)
    assert train.input_shape == (1, 8, 8)


def test_fashion_mnist_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setattr(fm, "DEFAULT_DIR", tmp_path / "none")
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        build_datasets("fashion_mnist", data_dir=tmp_path)
