"""A whole-tensor, in-memory dataset.

Every dataset growprune trains on fits in memory (Fashion-MNIST is ~190 MB as float32), so we
keep inputs and labels as two tensors instead of per-item Python objects. That lets the
:class:`~growprune.data.loader.TensorLoader` gather a batch with one indexing op, which matters
on 2-core CPU runners where a per-item ``DataLoader`` can cost more than the model itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

__all__ = ["InMemoryDataset"]


class InMemoryDataset(Dataset):
    """Inputs ``x`` (N, ...) float32 and labels ``y`` (N,) int64, plus metadata.

    Subclasses ``torch.utils.data.Dataset`` so it also works with a plain ``DataLoader``, but
    the fast path is :class:`TensorLoader`, which reads ``x`` and ``y`` directly.

    Attributes:
        x: input tensor, already normalized.
        y: int64 label tensor.
        num_classes: number of label values (labels are ``0..num_classes-1``).
        name: short identifier used in logs.
        pad_value: the normalized value of a "blank" input pixel. Random-crop augmentation pads
            with this so padding looks like background rather than mid-grey after normalization.
        classes: optional human-readable class names.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        num_classes: int,
        name: str = "dataset",
        pad_value: float = 0.0,
        classes: Sequence[str] | None = None,
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} items but y has {y.shape[0]}")
        if y.dtype != torch.int64:
            raise ValueError(f"labels must be int64, got {y.dtype}")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"{len(classes)} class names for {num_classes} classes")
        self.x = x
        self.y = y
        self.num_classes = int(num_classes)
        self.name = name
        self.pad_value = float(pad_value)
        self.classes = tuple(classes) if classes is not None else None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input item, e.g. ``(1, 28, 28)``; models are built from this."""
        return tuple(self.x.shape[1:])

    def _like(self, x: torch.Tensor, y: torch.Tensor) -> InMemoryDataset:
        return InMemoryDataset(
            x,
            y,
            num_classes=self.num_classes,
            name=self.name,
            pad_value=self.pad_value,
            classes=self.classes,
        )

    def subset(self, n: int) -> InMemoryDataset:
        """The first ``n`` items (deterministic, for smoke runs); ``n`` larger than len is ok."""
        if n < 0:
            raise ValueError(f"subset size must be >= 0, got {n}")
        return self._like(self.x[:n], self.y[:n])

    def take(self, indices: torch.Tensor | Sequence[int]) -> InMemoryDataset:
        """The items at ``indices`` in that order (e.g. a validation split)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self._like(self.x[idx], self.y[idx])

    def to(self, device: torch.device | str) -> InMemoryDataset:
        """Move the tensors, e.g. onto a GPU so batches never cross the PCIe bus."""
        return self._like(self.x.to(device), self.y.to(device))

    def __repr__(self) -> str:
        return (
            f"InMemoryDataset(name={self.name!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )
