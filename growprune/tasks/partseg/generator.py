"""A generated stand-in for ShapeNet-Part, written in exactly the benchmark's folder layout.

ShapeNet cannot be downloaded on the machines this project is built on, so the part-segmentation
task ships objects built from geometric primitives with random proportions and poses: an airplane
is fuselage + wings + tail + engines, a chair seat + back + legs (+ arms), a lamp base + pole +
shade (+ bulb), a mug body + handle, a table top + legs (+ shelf), a guitar body + neck + head.
Each primitive is one part, labelled with the category's global benchmark part id, and its
surface is sampled with outward normals. The result is written as
``shapenetcore_partanno_segmentation_benchmark_v0_normal/`` (see :mod:`growprune.tasks.partseg.shapenet_part`)
so the loader reads it through the same code as the real dataset.

Optional parts (chair arms, lamp bulb, table shelf) are absent from some shapes, so the metric's
"part absent from both prediction and label" case occurs as in ShapeNet. Up is +y, as in ShapeNet.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from growprune.tasks.partseg.shapenet_part import CATEGORIES, FOLDER_NAME

__all__ = ["GENERATED_CATEGORIES", "GENERATOR_VERSION", "generate", "generated_root"]

# Bump when the shapes or the written format change: cached folders are keyed by it.
GENERATOR_VERSION = 1

Surface = tuple[np.ndarray, np.ndarray]  # (points (n, 3), unit normals (n, 3))
Primitive = tuple[float, Callable[[np.random.Generator, int], Surface]]  # (area, sampler)
Part = tuple[int, list[Primitive]]  # (part offset within the category, its primitives)


# --- rotations and primitives (local frames; up is +y) -----------------------------------------


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _placed(
    prim: Primitive, rotation: np.ndarray | None = None, offset: Sequence[float] = (0, 0, 0)
) -> Primitive:
    area, sample = prim
    r = np.eye(3) if rotation is None else rotation
    t = np.asarray(offset, dtype=float)

    def placed(rng: np.random.Generator, n: int) -> Surface:
        p, nrm = sample(rng, n)
        return p @ r.T + t, nrm @ r.T

    return area, placed


def _box(sx: float, sy: float, sz: float) -> Primitive:
    """Surface of an axis-aligned box centred at the origin."""
    areas = np.array([sy * sz, sy * sz, sx * sz, sx * sz, sx * sy, sx * sy])
    half = np.array([sx, sy, sz]) / 2

    def sample(rng: np.random.Generator, n: int) -> Surface:
        face = rng.choice(6, size=n, p=areas / areas.sum())
        p = (rng.random((n, 3)) - 0.5) * 2 * half
        axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
        p[np.arange(n), axis] = sign * half[axis]
        nrm = np.zeros((n, 3))
        nrm[np.arange(n), axis] = sign
        return p, nrm

    return float(areas.sum()), sample


def _cylinder(radius: float, height: float, caps: tuple[bool, bool] = (True, True)) -> Primitive:
    """Side (and caps) of a y-axis cylinder centred at the origin."""
    cap_area = np.pi * radius**2
    areas = np.array([2 * np.pi * radius * height, cap_area * caps[0], cap_area * caps[1]])

    def sample(rng: np.random.Generator, n: int) -> Surface:
        where = rng.choice(3, size=n, p=areas / areas.sum())
        theta = rng.random(n) * 2 * np.pi
        rho = np.where(where == 0, radius, radius * np.sqrt(rng.random(n)))
        y = np.where(
            where == 0, (rng.random(n) - 0.5) * height, np.where(where == 1, -height / 2, height / 2)
        )
        p = np.stack([rho * np.cos(theta), y, rho * np.sin(theta)], axis=1)
        nrm = np.stack([np.cos(theta), np.zeros(n), np.sin(theta)], axis=1)
        nrm[where == 1] = (0, -1, 0)
        nrm[where == 2] = (0, 1, 0)
        return p, nrm

    return float(areas.sum()), sample


def _frustum(r_bottom: float, r_top: float, height: float) -> Primitive:
    """Open lateral surface of a y-axis cone frustum centred at the origin (a lamp shade)."""
    slant = float(np.hypot(height, r_bottom - r_top))

    def sample(rng: np.random.Generator, n: int) -> Surface:
        t, theta = rng.random(n), rng.random(n) * 2 * np.pi
        r = r_bottom + (r_top - r_bottom) * t
        p = np.stack([r * np.cos(theta), (t - 0.5) * height, r * np.sin(theta)], axis=1)
        nrm = np.stack([height * np.cos(theta), np.full(n, r_bottom - r_top), height * np.sin(theta)], axis=1)
        return p, nrm / np.linalg.norm(nrm, axis=1, keepdims=True)

    return float(np.pi * (r_bottom + r_top) * slant), sample


def _ellipsoid(a: float, b: float, c: float) -> Primitive:
    """Surface of an axis-aligned ellipsoid with semi-axes (a, b, c)."""
    radii = np.array([a, b, c])
    p_ = 1.6075  # Knud Thomsen's surface-area approximation
    area = 4 * np.pi * (((a * b) ** p_ + (a * c) ** p_ + (b * c) ** p_) / 3) ** (1 / p_)

    def sample(rng: np.random.Generator, n: int) -> Surface:
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        nrm = d / radii
        return d * radii, nrm / np.linalg.norm(nrm, axis=1, keepdims=True)

    return float(area), sample


def _torus_arc(major: float, minor: float, start: float, stop: float) -> Primitive:
    """Part of a torus around the z axis (in the x-y plane): a mug handle."""

    def sample(rng: np.random.Generator, n: int) -> Surface:
        u = start + (stop - start) * rng.random(n)
        v = rng.random(n) * 2 * np.pi
        radial = np.stack([np.cos(u), np.sin(u), np.zeros(n)], axis=1)
        d = np.cos(v)[:, None] * radial + np.sin(v)[:, None] * np.array([0.0, 0.0, 1.0])
        return major * radial + minor * d, d

    return float((stop - start) * major * 2 * np.pi * minor), sample


# --- categories ----------------------------------------------------------------------------------


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _airplane(rng: np.random.Generator) -> list[Part]:
    length, radius = _u(rng, 1.6, 2.2), _u(rng, 0.12, 0.2)
    span, chord = _u(rng, 1.4, 2.2), _u(rng, 0.25, 0.45)
    wing_x = _u(rng, -0.2, 0.2)
    sweep = _u(rng, -0.3, 0.0)
    tail_h, tail_c = _u(rng, 0.25, 0.45), _u(rng, 0.2, 0.35)
    half_span = span / 2
    wing = [
        _placed(_box(chord, 0.04, half_span), _rot("y", sweep * side), (wing_x, 0, side * half_span / 2))
        for side in (1, -1)
    ]
    tail = [
        _placed(_box(tail_c, tail_h, 0.04), None, (-length / 2 + tail_c / 2, radius + tail_h / 2, 0)),
        _placed(_box(tail_c * 0.8, 0.03, span * 0.35), None, (-length / 2 + tail_c / 2, radius * 0.5, 0)),
    ]
    eng_r, eng_l = _u(rng, 0.06, 0.1), _u(rng, 0.25, 0.4)
    engines = [
        _placed(
            _cylinder(eng_r, eng_l), _rot("z", np.pi / 2), (wing_x + 0.05, -eng_r - 0.04, side * span * 0.22)
        )
        for side in (1, -1)
    ]
    return [(0, [_ellipsoid(length / 2, radius, radius)]), (1, wing), (2, tail), (3, engines)]


def _chair(rng: np.random.Generator) -> list[Part]:
    w, d, seat_y = _u(rng, 0.8, 1.1), _u(rng, 0.8, 1.1), _u(rng, 0.7, 1.0)
    thick, back_h, tilt = _u(rng, 0.06, 0.12), _u(rng, 0.7, 1.1), _u(rng, 0.0, 0.3)
    leg = _u(rng, 0.04, 0.07)
    back = _placed(
        _box(w, back_h, thick),
        _rot("x", -tilt),
        (0, seat_y + back_h / 2 * np.cos(tilt), -d / 2 - back_h / 2 * np.sin(tilt)),
    )
    legs = [
        _placed(_box(leg, seat_y, leg), None, (sx * (w / 2 - leg), seat_y / 2, sz * (d / 2 - leg)))
        for sx in (1, -1)
        for sz in (1, -1)
    ]
    parts: list[Part] = [(0, [back]), (1, [_placed(_box(w, thick, d), None, (0, seat_y, 0))]), (2, legs)]
    if rng.random() < 0.5:
        arm_h = _u(rng, 0.2, 0.35)
        arms = [_placed(_box(0.06, 0.06, d * 0.9), None, (sx * w / 2, seat_y + arm_h, 0)) for sx in (1, -1)]
        parts.append((3, arms))
    return parts


def _lamp(rng: np.random.Generator) -> list[Part]:
    base_r, base_h = _u(rng, 0.25, 0.45), _u(rng, 0.04, 0.1)
    pole_h, tilt = _u(rng, 0.8, 1.5), _u(rng, -0.25, 0.25)
    shade_h, r_top, r_bottom = _u(rng, 0.25, 0.45), _u(rng, 0.08, 0.2), _u(rng, 0.25, 0.45)
    top = np.array([np.sin(tilt) * pole_h, base_h + np.cos(tilt) * pole_h, 0.0])
    pole = _placed(
        _cylinder(0.03, pole_h), _rot("z", -tilt), (top[0] / 2, base_h + top[1] / 2 - base_h / 2, 0)
    )
    shade_c = top + (0, -shade_h * 0.3, 0)
    parts: list[Part] = [
        (0, [_placed(_cylinder(base_r, base_h), None, (0, base_h / 2, 0))]),
        (1, [pole]),
        (2, [_placed(_frustum(r_bottom, r_top, shade_h), None, shade_c)]),
    ]
    if rng.random() < 0.6:
        bulb = _u(rng, 0.06, 0.1)
        parts.append(
            (3, [_placed(_ellipsoid(bulb, bulb * 1.3, bulb), None, shade_c - (0, shade_h * 0.3, 0))])
        )
    return parts


def _mug(rng: np.random.Generator) -> list[Part]:
    radius, height = _u(rng, 0.3, 0.5), _u(rng, 0.6, 1.1)
    major, minor = _u(rng, 0.18, 0.3) * height / 0.8, _u(rng, 0.03, 0.06)
    handle = _placed(_torus_arc(major, minor, -np.pi / 2, np.pi / 2), None, (radius, height / 2, 0))
    body = _placed(_cylinder(radius, height, caps=(True, False)), None, (0, height / 2, 0))
    return [(0, [body]), (1, [handle])]


def _table(rng: np.random.Generator) -> list[Part]:
    w, d, h = _u(rng, 1.2, 2.0), _u(rng, 0.7, 1.2), _u(rng, 0.7, 1.0)
    thick = _u(rng, 0.04, 0.1)
    if rng.random() < 0.3:
        radius = min(w, d) / 2
        top = _placed(_cylinder(radius, thick), None, (0, h, 0))
        legs = [_placed(_cylinder(_u(rng, 0.05, 0.1), h), None, (0, h / 2, 0))]
    else:
        top = _placed(_box(w, thick, d), None, (0, h, 0))
        leg = _u(rng, 0.05, 0.1)
        legs = [
            _placed(_box(leg, h, leg), None, (sx * (w / 2 - leg), h / 2, sz * (d / 2 - leg)))
            for sx in (1, -1)
            for sz in (1, -1)
        ]
    parts: list[Part] = [(0, [top]), (1, legs)]
    if len(legs) == 4 and rng.random() < 0.5:
        parts.append((2, [_placed(_box(w * 0.85, 0.03, d * 0.85), None, (0, h * _u(rng, 0.2, 0.4), 0))]))
    return parts


def _guitar(rng: np.random.Generator) -> list[Part]:
    lower, upper = _u(rng, 0.35, 0.5), _u(rng, 0.25, 0.38)
    depth, neck_l = _u(rng, 0.06, 0.12), _u(rng, 0.9, 1.3)
    body = [
        _placed(_ellipsoid(lower, lower * 1.1, depth), None, (0, lower, 0)),
        _placed(_ellipsoid(upper, upper * 1.1, depth), None, (0, 2 * lower + upper * 0.6, 0)),
    ]
    neck_y = 2 * lower + upper * 1.2 + neck_l / 2
    head_l = _u(rng, 0.2, 0.35)
    head = _placed(
        _box(0.14, head_l, 0.04), _rot("x", _u(rng, 0.0, 0.3)), (0, neck_y + neck_l / 2 + head_l / 2, 0)
    )
    return [(0, body), (1, [_placed(_box(0.08, neck_l, 0.05), None, (0, neck_y, 0))]), (2, [head])]


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "Airplane": _airplane,
    "Chair": _chair,
    "Guitar": _guitar,
    "Lamp": _lamp,
    "Mug": _mug,
    "Table": _table,
}
GENERATED_CATEGORIES: tuple[str, ...] = tuple(sorted(_BUILDERS))


def shape_rows(category: str, rng: np.random.Generator, points: int) -> np.ndarray:
    """(points, 7) rows ``x y z nx ny nz part`` of one random shape of ``category``."""
    info = next(c for c in CATEGORIES if c.name == category)
    parts = _BUILDERS[category](rng)
    prims = [(info.first_part + offset, prim) for offset, group in parts for prim in group]
    areas = np.array([area for _, (area, _) in prims])
    counts = rng.multinomial(points, areas / areas.sum())
    rows = []
    for (label, (_, sample)), count in zip(prims, counts):
        if count:
            p, nrm = sample(rng, int(count))
            rows.append(np.concatenate([p, nrm, np.full((count, 1), float(label))], axis=1))
    out = np.concatenate(rows)
    yaw = _rot("y", _u(rng, -0.3, 0.3))  # a little pose variation around the up axis
    out[:, :3] = out[:, :3] @ yaw.T
    out[:, 3:6] = out[:, 3:6] @ yaw.T
    return out


def generate(
    target: str | os.PathLike[str],
    *,
    categories: Sequence[str] = GENERATED_CATEGORIES,
    shapes_per_category: int = 80,
    points_per_shape: int = 1024,
    seed: int = 0,
) -> Path:
    """Write a dataset in the ShapeNet-Part layout to ``target`` (which must not exist yet).

    Splits are 70% / 10% / 20% (train / val / test) within each category, then shuffled across
    categories, as the benchmark's ``shuffled_*_file_list.json`` are. Returns ``target``.
    """
    unknown = sorted(set(categories) - set(_BUILDERS))
    if unknown:
        raise ValueError(
            f"cannot generate {', '.join(unknown)}; generated categories: {', '.join(GENERATED_CATEGORIES)}"
        )
    if shapes_per_category < 3 or points_per_shape < 16:
        raise ValueError("need at least 3 shapes per category (one per split) and 16 points per shape")
    root = Path(target)
    root.mkdir(parents=True)
    rng = np.random.default_rng([seed, GENERATOR_VERSION])
    lines, splits = [], {"train": [], "val": [], "test": []}
    for category in sorted(categories, key=lambda name: next(c.synset for c in CATEGORIES if c.name == name)):
        synset = next(c.synset for c in CATEGORIES if c.name == category)
        lines.append(f"{category}\t{synset}")
        (root / synset).mkdir()
        ids = []
        for _ in range(shapes_per_category):
            shape_id = rng.bytes(16).hex()
            rows = shape_rows(category, rng, points_per_shape)
            np.savetxt(root / synset / f"{shape_id}.txt", rows, fmt="%.6f")
            ids.append(f"shape_data/{synset}/{shape_id}")
        n_val = max(1, shapes_per_category // 10)
        n_test = max(1, shapes_per_category // 5)
        splits["test"] += ids[:n_test]
        splits["val"] += ids[n_test : n_test + n_val]
        splits["train"] += ids[n_test + n_val :]
    (root / "synsetoffset2category.txt").write_text("\n".join(lines) + "\n")
    (root / "train_test_split").mkdir()
    for split, entries in splits.items():
        order = rng.permutation(len(entries))
        shuffled = [entries[i] for i in order]
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(shuffled))
    return root


def generated_root(
    cache: Path,
    *,
    categories: Sequence[str] = GENERATED_CATEGORIES,
    shapes_per_category: int = 80,
    points_per_shape: int = 1024,
    seed: int = 0,
) -> Path:
    """The generated dataset's folder under ``cache``, generated there on first use.

    The folder is written beside its final place and renamed into it, so an interrupted
    generation leaves no half-written dataset that a later run would trust.
    """
    names = "-".join(sorted(c.lower() for c in categories))
    key = f"v{GENERATOR_VERSION}-{names}-{shapes_per_category}x{points_per_shape}-seed{seed}"
    final = cache / "shapenet_part_generated" / key
    if (final / FOLDER_NAME).is_dir():
        return final / FOLDER_NAME
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        generate(
            tmp / FOLDER_NAME,
            categories=categories,
            shapes_per_category=shapes_per_category,
            points_per_shape=points_per_shape,
            seed=seed,
        )
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / FOLDER_NAME).is_dir():  # another process won the race: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / FOLDER_NAME


def main() -> None:
    """``python -m growprune.tasks.partseg.generator``: generate the default dataset into the cache
    (``$GROWPRUNE_CACHE``, else ``~/.cache/growprune``) and print its folder (``make partseg-data``)."""
    from growprune.data.cache import cache_root

    print(generated_root(cache_root()))


if __name__ == "__main__":
    main()
