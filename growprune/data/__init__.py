"""What every task's data shares: in-memory tensors, the seeded batch loader, the cache folder,
dataset errors and argument checks, and the BPE tokenizer wrapper of the token tasks
(:mod:`growprune.data.bpe`, not imported here: ``tokenizers`` is an extra). Each task's own
readers and generators live in its folder (``growprune/tasks/<task>/``).

Everything is held as whole tensors in memory (:class:`InMemoryDataset`) and batched by
:class:`TensorLoader`, whose batch sequence is a pure function of (seed, epoch, batch index).
"""

from growprune.data.cache import cache_root
from growprune.data.dataset import InMemoryDataset
from growprune.data.errors import DatasetCorruptError, DatasetNotFoundError
from growprune.data.loader import Augment, TensorLoader

__all__ = [
    "Augment",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "InMemoryDataset",
    "TensorLoader",
    "cache_root",
]
