"""Fixtures for the method tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """Run these tiny models on one intra-op thread.

    With 2 cores shared by other processes, two intra-op threads spin-wait on each other and the
    tiny layers here run 10-30x slower than on one thread; results do not depend on it.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
