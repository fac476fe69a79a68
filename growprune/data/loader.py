"""Deterministic, whole-tensor batch iteration with batched augmentation.

Why not ``torch.utils.data.DataLoader``: on small CPU runners its per-item collation and worker
processes cost more than a small CNN step, and its randomness comes from global RNG state that
is hard to reproduce after a restart. Here every random choice for batch ``b`` of epoch ``e`` is
drawn from generators seeded only by ``(seed, e)`` (the shuffle) and ``(seed, e, b)`` (the
augmentation). A training run that resumes at batch ``b`` therefore sees exactly the batches it
would have seen without the interruption, with no RNG state to save.

Random numbers always come from CPU generators and are then moved to the data's device, so a
dataset kept on a GPU yields the same batches as on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from growprune.data.dataset import InMemoryDataset
from growprune.seeding import stream_seed

__all__ = ["Augment", "EpochLoader", "TensorLoader"]

# Independent random streams derived from one user seed.
_STREAM_SHUFFLE = 0
_STREAM_AUGMENT = 1


def _generator(*keys: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(stream_seed(*keys))
    return g


@dataclass(frozen=True)
class Augment:
    """Batched random crop (after padding) and horizontal flip for (B, C, H, W) tensors.

    Attributes:
        crop_padding: pad each side by this many pixels, then crop back to H x W at a random
            offset per image (0 disables; 2 or 4 are usual for 28x28 / 32x32 images).
        hflip: flip each image left-right with probability 1/2.
        fill: value used for the padding; pass ``dataset.pad_value`` so the border matches the
            normalized background instead of being mid-grey.
    """

    crop_padding: int = 0
    hflip: bool = False
    fill: float = 0.0

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")

    @property
    def is_identity(self) -> bool:
        return self.crop_padding == 0 and not self.hflip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch. Draws (offsets, then flips) from ``generator`` in a fixed order."""
        if self.is_identity:
            return x
        if x.dim() != 4:
            raise ValueError(f"Augment needs (B, C, H, W) input, got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            offsets = torch.randint(0, 2 * p + 1, (b, 2), generator=generator).to(x.device)
            x = _random_crop(x, offsets, p, self.fill)
        if self.hflip:
            flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
        return x


def _random_crop(x: torch.Tensor, offsets: torch.Tensor, pad: int, fill: float) -> torch.Tensor:
    """Crop each padded image at its own (row, col) offset with two gathers (no Python loop)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # (B, W)
    row_idx = rows.view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    x = padded.gather(2, row_idx)
    col_idx = cols.view(b, 1, 1, w).expand(b, c, h, w)
    return x.gather(3, col_idx)


class EpochLoader:
    """What every deterministic loader here shares: a batch count that is the same every epoch,
    and an epoch cursor for plain ``iter()`` (as with ``DistributedSampler.set_epoch``)."""

    batch_size: int
    drop_last: bool
    _epoch: int = 0

    @property
    def num_samples(self) -> int:
        raise NotImplementedError

    @property
    def epoch(self) -> int:
        return self._epoch

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _init_batching(self, batch_size: int, shuffle: bool, drop_last: bool, seed: int) -> None:
        """Validate and store the batching settings every loader takes, so both reject bad
        values with the same message."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select which epoch's order (and augmentation) the next ``iter()`` produces."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch = int(epoch)


class TensorLoader(EpochLoader):
    """Iterate ``(x_batch, y_batch)`` over in-memory tensors, reproducibly.

    The batch sequence of epoch ``e`` depends only on ``(seed, e)``: call :meth:`set_epoch`
    before each epoch (as with ``DistributedSampler``; without it every epoch repeats epoch 0's
    order), or use :meth:`iter_from` to start mid-epoch when resuming from a checkpoint.

    Args:
        x: inputs (N, ...), on any device.
        y: labels (N,), on the same device as ``x``.
        batch_size: items per batch.
        shuffle: draw a fresh permutation each epoch; otherwise keep dataset order.
        drop_last: drop the final short batch (keeps batch statistics uniform for BN).
        augment: batched augmentation applied to each batch, or None.
        seed: non-negative base seed for all randomness of this loader.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} items but y has {y.shape[0]}")
        self._init_batching(batch_size, shuffle, drop_last, seed)
        self.x = x
        self.y = y
        self.augment = None if augment is None or augment.is_identity else augment

    @classmethod
    def from_dataset(cls, dataset: InMemoryDataset, batch_size: int, **kwargs) -> TensorLoader:
        """Build a loader over an :class:`InMemoryDataset`'s tensors."""
        return cls(dataset.x, dataset.y, batch_size, **kwargs)

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[0])

    def order(self, epoch: int) -> torch.Tensor:
        """Item indices (CPU, int64) in the order epoch ``epoch`` visits them."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if not self.shuffle:
            return torch.arange(self.num_samples)
        return torch.randperm(self.num_samples, generator=_generator(self.seed, _STREAM_SHUFFLE, epoch))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(self._epoch, 0)

    def iter_from(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start_batch, start_batch + 1, ...`` of ``epoch``.

        Identical to skipping the first ``start_batch`` batches of a full pass, but costs
        nothing for the skipped ones. ``start_batch == len(self)`` yields nothing.
        """
        n_batches = len(self)
        if not 0 <= start_batch <= n_batches:
            raise ValueError(f"start_batch must be in [0, {n_batches}], got {start_batch}")
        order = self.order(epoch).to(self.x.device)
        return self._batches(order, epoch, start_batch, n_batches)

    def _batches(
        self, order: torch.Tensor, epoch: int, start: int, stop: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in range(start, stop):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self._make_batch(idx, epoch, b)

    def batch(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random access to batch ``index`` of ``epoch`` (same tensors iteration yields)."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range [0, {len(self)})")
        order = self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        return self._make_batch(order.to(self.x.device), epoch, index)

    def _make_batch(self, idx: torch.Tensor, epoch: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = self.x[idx], self.y[idx]
        if self.augment is not None:
            xb = self.augment(xb, _generator(self.seed, _STREAM_AUGMENT, epoch, b))
        return xb, yb

    def __repr__(self) -> str:
        return (
            f"TensorLoader(n={self.num_samples}, batch_size={self.batch_size}, "
            f"batches={len(self)}, shuffle={self.shuffle}, drop_last={self.drop_last}, "
            f"augment={self.augment}, seed={self.seed}, epoch={self._epoch})"
        )
