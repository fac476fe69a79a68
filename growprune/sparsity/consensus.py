"""Invariant 6: masks are equal on every rank that trains the same model, or it is an error.

A checksum all-reduce (min and max) after every mask change costs two scalars per change and turns
a silent divergence -- a rank built with another seed, recipe or library version -- into an error
that names the moment it happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

MASK_CHECK_PRIME = 2_147_483_629


def mask_checksum(masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """An order- and position-sensitive fingerprint of the masks (int64, on the masks' device)."""
    total = None
    for layer, mask in enumerate(masks.values(), start=1):
        flat = mask.reshape(-1).to(torch.int64)
        positions = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.int64)
        value = ((flat * positions) % MASK_CHECK_PRIME).sum() * layer + flat.sum()
        total = value if total is None else total + value
    assert total is not None
    return total.reshape(1)


def verify_masks_equal(masks: Mapping[str, torch.Tensor], group: Any = None, what: str = "") -> None:
    """All-reduce min and max of the checksum; any difference is an error, never a divergence."""
    checksum = mask_checksum(masks)
    if dist.get_backend(group) == "nccl":
        checksum = checksum.cuda()
    low, high = checksum.clone(), checksum.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN, group=group)
    dist.all_reduce(high, op=dist.ReduceOp.MAX, group=group)
    if int(low) != int(high):
        raise RuntimeError(
            f"masks differ across ranks{f' after {what}' if what else ''} "
            f"(checksums {int(low)} vs {int(high)}): every rank must use the same seed, recipe "
            "and growprune version"
        )


def default_group(process_group: Any) -> Any:
    """The group to check: "auto" is every rank when torch.distributed runs with more than one,
    else nothing (None); an explicit group is used as given."""
    if isinstance(process_group, str):
        if process_group != "auto":
            raise ValueError(f"process_group must be 'auto', None or a process group, got {process_group!r}")
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist.group.WORLD
        return None
    return process_group
