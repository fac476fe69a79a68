"""The part-segmentation data of a run: which folder, its three splits, and their augmentation.

The folder is ``root`` (the ``shapenetcore_partanno_segmentation_benchmark_v0_normal/`` folder
itself), else ``$GROWPRUNE_SHAPENET_PART``, else the generated stand-in, which is written once
into the cache (``cache_dir``, else ``$GROWPRUNE_CACHE``, else ``~/.cache/growprune``) and then
read from there through the same reader as the real dataset.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from growprune.data.cache import cache_root
from growprune.tasks.partseg.generator import GENERATED_CATEGORIES, generated_root
from growprune.tasks.partseg.shapenet_part import ROOT_ENV_VAR, PartSegSplit, PointAugment, load_split

__all__ = ["PartSegData", "load_part_segmentation", "resolve_root"]


@dataclass
class PartSegData:
    """Train / val / test splits of one folder, and where they came from."""

    train: PartSegSplit
    val: PartSegSplit
    test: PartSegSplit
    root: Path
    generated: bool
    augment: PointAugment


def resolve_root(
    root: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    *,
    categories: Sequence[str],
    shapes_per_category: int,
    points_per_shape: int,
    seed: int,
) -> tuple[Path, bool]:
    """(folder to read, whether it is the generated stand-in)."""
    if root is not None:
        return Path(root).expanduser(), False
    env = os.environ.get(ROOT_ENV_VAR)
    if env:
        return Path(env).expanduser(), False
    folder = generated_root(
        cache_root(cache_dir),
        categories=categories,
        shapes_per_category=shapes_per_category,
        points_per_shape=points_per_shape,
        seed=seed,
    )
    return folder, True


def load_part_segmentation(
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    points: int = 2048,
    normals: bool = True,
    seed: int = 0,
    scale: Sequence[float] = (0.8, 1.25),
    jitter: float = 0.01,
    generated_categories: Sequence[str] = GENERATED_CATEGORIES,
    generated_shapes: int = 80,
    generated_points: int = 1024,
    limit: int | None = None,
) -> PartSegData:
    """Read (generating first if needed) the three splits of a ShapeNet-Part folder.

    Args:
        root: the dataset folder itself; None: ``$GROWPRUNE_SHAPENET_PART``, else the generated one.
        cache_dir: where the generated dataset is kept.
        points: points sampled per shape (seeded by ``seed`` and the shape's position).
        normals: feed the normals to the model (6 channels) or only xyz (3).
        seed: of the per-shape point sampling (and of the generated dataset).
        scale: (low, high) of the random per-axis scaling of training batches.
        jitter: standard deviation of the Gaussian jitter of training points (clipped at 5x).
        generated_categories, generated_shapes, generated_points: the generated stand-in's
            categories, shapes per category and points written per shape.
        limit: read only the first ``limit`` shapes of each split (smoke runs).
    """
    if len(scale) != 2:
        raise ValueError(f"scale must be [low, high], got {list(scale)}")
    folder, generated = resolve_root(
        root,
        cache_dir,
        categories=generated_categories,
        shapes_per_category=generated_shapes,
        points_per_shape=generated_points,
        seed=seed,
    )
    splits = [
        load_split(folder, s, points=points, normals=normals, seed=seed, limit=limit)
        for s in ("train", "val", "test")
    ]
    augment = PointAugment(float(scale[0]), float(scale[1]), float(jitter), 5 * float(jitter))
    return PartSegData(*splits, root=folder, generated=generated, augment=augment)
