"""The long-budget tier (LeNet-300-100, 100 epochs): its runs, recipes that build with one layer
per GaP partition and equal compute for every method, its table in RESULTS.md -- and the quick
tier's recipes and table left as they were."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import RESULTS_DIR, read_rows
from benchmarks.make_results import quality_section, quality_table
from benchmarks.quality import (
    TIERS,
    RunSpec,
    build_recipe_dict,
    method_section,
    model_label,
    recipe_epochs_of_compute,
    steps_per_epoch,
    table_specs,
)

LONG = TIERS["long"]
LONG_METHODS = ["dense", "oneshot", "gmp", "rigl", "rigl-torch", "cgap", "pgap"]


def test_long_tier_is_lenet_300_100_at_100_epochs() -> None:
    assert (LONG.model, LONG.model_args, LONG.epochs) == ("mlp", {"hidden": [300, 100]}, 100)
    assert model_label(LONG) == "mlp(hidden=300-100)" and model_label(TIERS["quick"]) == "small_cnn(width=12)"
    assert list(LONG.methods) == LONG_METHODS and LONG.sparsities == (0.9, 0.95, 0.98)
    assert LONG.seeds == (0, 1, 2) and LONG.distributions == ("uniform",)
    specs = table_specs(LONG, list(LONG.methods), list(LONG.sparsities))
    assert len(specs) == 3 * (1 + 6 * 3) == 57
    # a cut-off benchmark leaves whole seeds, then whole sparsity levels, missing
    assert [s.method for s in specs[:7]] == ["dense", "oneshot", "gmp", "rigl", "rigl-torch", "cgap", "pgap"]
    assert [s.seed for s in specs] == sorted(s.seed for s in specs)


def test_long_recipes_have_no_augmentation_and_k3() -> None:
    for method in LONG_METHODS[1:]:
        recipe = build_recipe_dict(RunSpec("long", method, 0.95, "uniform", 0), LONG, 1)
        assert recipe["data"]["random_crop"] is False and recipe["data"]["hflip"] is False
        assert recipe["model"] == {"name": "mlp", "args": {"hidden": [300, 100]}}
        if method in ("cgap", "pgap"):
            assert recipe["method"]["partitions"] == 3


@pytest.mark.parametrize("method", LONG_METHODS)
def test_long_tier_builds_with_equal_compute(method: str, tmp_path: Path) -> None:
    """Each method's recipe builds on the real data at the tier's highest sparsity; GaP has one
    layer per partition; every method's schedule is 100 epochs of compute within a step."""
    from growprune.train.engine import Trainer
    from growprune.train.recipe import validate_recipe

    sparsity = 0.0 if method == "dense" else 0.98
    spec = RunSpec("long", method, sparsity, "dense" if method == "dense" else "uniform", 0)
    recipe = validate_recipe(build_recipe_dict(spec, LONG, 1))
    assert abs(recipe_epochs_of_compute(recipe) - 100) < 1e-6
    if method == "rigl-torch":
        return  # its own loop: the engine's dense recipe of the same length (checked below)
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    per_epoch = steps_per_epoch(LONG)
    assert trainer.steps_per_epoch == per_epoch == 468
    assert trainer.train_loader.augment is None
    assert abs(trainer.planned_steps() - 100 * per_epoch) <= 6, trainer.planned_steps()  # K x rounding
    if method in ("cgap", "pgap"):
        assert trainer.sparsifier.partitions == [
            ["features.1.weight"],
            ["features.3.weight"],
            ["classifier.weight"],
        ]


def test_rigl_torch_prunes_every_mlp_layer() -> None:
    if importlib.util.find_spec("rigl_torch") is None:
        pytest.skip("rigl-torch (the `bench` extra) is not installed")
    import torch

    from benchmarks.quality import make_rigl_torch_scheduler
    from growprune.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("mlp", hidden=[300, 100])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    make_rigl_torch_scheduler(model, optimizer, 0.98, total_steps=46800)
    for layer in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        zeros, n = int((layer.weight == 0).sum()), layer.weight.numel()
        assert abs(zeros - int(0.98 * n)) <= 1, (layer, zeros, n)


def test_quick_tier_recipes_are_the_committed_ones() -> None:
    """Every committed quick-tier table row (its own budget and the budget sweep) was run with the
    method section the benchmark builds today, plus the first conv in `exclude` for the rows of the
    first-dense convention: the quick tier's behaviour is otherwise unchanged."""
    rows = [
        r
        for r in read_rows(RESULTS_DIR / "quality.jsonl")
        if r["tier"] == "quick" and not str(r.get("variant", "")).startswith("study:")
    ]
    assert len(rows) >= 50
    quick = TIERS["quick"]
    for row in rows:
        variant = row.get("variant", "")
        epochs = float(variant.split(":")[1]) if variant else quick.epochs
        method = "rigl" if row["method"] == "rigl-torch" else row["method"]
        section = method_section(method, row["sparsity"], row["distribution"], epochs, steps_per_epoch(quick))
        if row.get("layers", "all") == "first-dense" and method != "dense":
            section["exclude"] = ["features.0.weight"]
        assert section == row["method_config"], row
    recipe = build_recipe_dict(RunSpec("quick", "cgap", 0.9, "uniform", 0), quick, 1)
    assert recipe["data"]["random_crop"] and recipe["data"]["hflip"]
    assert recipe["training"]["precision"] == "fp32" and recipe["training"]["channels_last"] is False
    assert recipe["training"]["batch_size"] == 128 and recipe["optimizer"]["lr"] == 0.1


def long_row(method: str, sparsity: float, top1: float, seed: int = 0) -> dict[str, Any]:
    spec = RunSpec("long", method, sparsity, "dense" if method == "dense" else "uniform", seed)
    return {
        "tier": "long",
        "model": "mlp(hidden=300-100)",
        "method": method,
        "sparsity": sparsity,
        "distribution": spec.distribution,
        "seed": seed,
        "epochs": 100.0,
        "top1": top1,
        "final_sparsity": sparsity,
        "train_seconds": 120.0,
        "device": "cpu",
        "commit": "0123456789abcdef",
        "variant": "",
        "augment": False,
        "batch_size": 128,
        "lr": 0.1,
        "precision": "fp32",
        "method_config": build_recipe_dict(spec, LONG, 1)["method"],
    }


def test_long_table_rendered_first_with_its_settings(tmp_path: Path) -> None:
    rows = [
        long_row("dense", 0.0, 0.905),
        long_row("cgap", 0.9, 0.90),
        long_row("cgap", 0.9, 0.91, seed=1),
        long_row("pgap", 0.95, 0.88),
        long_row("gmp", 0.98, 0.85),
    ]
    table = "\n".join(quality_table(rows, "long"))
    assert "**Tier `long`**: `mlp(hidden=300-100)` on fashion_mnist, 100 epochs" in table
    assert "| method | 90% uniform | 95% uniform | 98% uniform |" in table
    assert "| C-GaP | 90.50 +- 0.71 | - | - |" in table
    assert "| P-GaP | - | 88.00 | - |" in table
    assert "no augmentation" in table and "C-GaP K=3 (2 rounds of 11.1-epoch steps" in table
    assert "P-GaP K=3 (4 rounds of 5.56-epoch steps" in table
    missing = table.split("Missing (not run yet): ")[1]
    assert "oneshot 90% uniform (0/2 seeds)" in missing and "cgap 90%" not in missing
    assert "set " not in missing and "admm" not in missing  # not methods of this tier
    quick = [
        {**long_row("dense", 0.0, 0.9), "tier": "quick", "model": "small_cnn(width=12)", "augment": True}
    ]
    section = quality_section(rows + quick, tmp_path)
    assert section.index("**Tier `long`**") < section.index("**Tier `quick`**")
    assert "Settings of this tier" not in "\n".join(quality_table(quick, "quick"))
