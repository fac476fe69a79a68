"""Seed derivation: both contracts pinned to the values they gave before they shared a module.

These numbers decide every data order and every random mask of every recorded run: a change
here changes the bundled recipes' results, so the values are pinned, not just their properties.
"""

from __future__ import annotations

import pytest
import torch

from growprune.seeding import keyed_seed, stream_seed


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ((0,), 6569863346532939966),
        ((0, 0, 0), 6569863346532939966),  # SeedSequence ignores trailing zero keys
        ((3, 1, 7, 2), 977187927122106106),
        ((12345, 0, 4), 2444692263013596017),
    ],
)
def test_stream_seed_values(keys: tuple[int, ...], expected: int) -> None:
    assert stream_seed(*keys) == expected


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ((3, "grow", 7, "fc.weight"), 7615425433179498243),
        ((0, "partition"), 5840299470516662537),
        ((5, "pgap-data", 2, 1), 2837351968308208890),
        ((3,), 1430129859461675328),
    ],
)
def test_keyed_seed_values(keys: tuple[object, ...], expected: int) -> None:
    assert keyed_seed(*keys) == expected


def test_stream_seed_rejects_negative_keys() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        stream_seed(1, -1)


def test_loader_order_is_unchanged() -> None:
    """The shuffle of the data loaders is the stream seed's (seed, 0, epoch) generator."""
    from growprune.data.loader import TensorLoader

    loader = TensorLoader(torch.zeros(10, 1), torch.zeros(10), batch_size=5, shuffle=True, seed=7)
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(stream_seed(7, 0, 2)))
    assert torch.equal(loader.order(2), expected)
    assert loader.order(2).tolist() == [6, 0, 4, 2, 7, 5, 8, 1, 9, 3]
