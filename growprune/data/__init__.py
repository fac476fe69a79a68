"""Datasets: Fashion-MNIST from local IDX files and a synthetic set for tests.

Everything is held as whole tensors in memory (:class:`InMemoryDataset`) and batched by
:class:`TensorLoader`, whose batch sequence is a pure function of (seed, epoch, batch index).
"""

from growprune.data.dataset import InMemoryDataset
from growprune.data.fashion_mnist import (
    DatasetCorruptError,
    DatasetNotFoundError,
    load_fashion_mnist,
)
from growprune.data.idx import IDXFormatError, read_idx
from growprune.data.loader import Augment, TensorLoader
from growprune.data.registry import build_datasets, list_datasets
from growprune.data.synthetic import make_synthetic, make_synthetic_images

__all__ = [
    "Augment",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "IDXFormatError",
    "InMemoryDataset",
    "TensorLoader",
    "build_datasets",
    "list_datasets",
    "load_fashion_mnist",
    "make_synthetic",
    "make_synthetic_images",
    "read_idx",
]
