"""Fixtures for the part-segmentation tests: a tiny generated ShapeNet-Part folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from growprune.tasks.partseg.generator import generate
from tests.single_thread import single_thread  # noqa: F401  (autouse fixture)

TINY = {"categories": ("Mug", "Table", "Lamp"), "shapes_per_category": 5, "points_per_shape": 96, "seed": 3}


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated folder: 3 categories x 5 shapes (3 train, 1 val, 1 test each), 96 points."""
    return generate(
        tmp_path_factory.mktemp("partseg") / "shapenetcore_partanno_segmentation_benchmark_v0_normal", **TINY
    )
