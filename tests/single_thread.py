"""One intra-op thread for test packages of tiny models (imported by their conftest.py).

With 2 cores shared by other processes, two intra-op threads spin-wait on each other and tiny
layers run 10-30x slower than on one thread; results do not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
