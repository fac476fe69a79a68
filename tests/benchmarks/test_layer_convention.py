"""The layer convention of the benchmark tiers: which layers every method prunes, how runs under
different conventions are kept apart, and how the tables place rows measured before it."""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import pytest

from benchmarks.make_results import by_convention, cgap_target_lines, quality_table, table_tier
from benchmarks.quality import (
    LAYER_CONVENTIONS,
    TIERS,
    RunSpec,
    build_recipe_dict,
    existing_keys,
    make_row,
    study_specs,
    table_specs,
)
from growprune.train.recipe import validate_recipe
from tests.benchmarks.helpers import quality_row, rigl_torch_layers


def test_conv_tiers_keep_their_first_conv_dense_and_the_mlp_tier_prunes_all() -> None:
    assert {name: tier.layers for name, tier in TIERS.items()} == {
        "quick": "first-dense",
        "long": "all",
        "full": "first-dense",
        "smoke": "first-dense",
    }
    assert set(LAYER_CONVENTIONS) == {"all", "first-dense"}
    for name, first in (("quick", "features.0.weight"), ("full", "conv1.weight")):
        tier = TIERS[name]
        for spec in table_specs(tier, ["dense", "gmp", "cgap", "pgap", "rigl-torch"], [0.9]):
            method = build_recipe_dict(spec, tier, 1)["method"]
            if spec.method == "dense":
                assert "exclude" not in method and spec.layers == "all"  # one dense row for both
            else:
                assert method["exclude"] == [first] and spec.layers == "first-dense", spec
    long = TIERS["long"]
    for spec in table_specs(long, list(long.methods), [0.9]):
        assert "exclude" not in build_recipe_dict(spec, long, 1)["method"]


def test_first_dense_keeps_exactly_the_first_layer_dense_in_a_real_run(tmp_path) -> None:
    """Built and trained through the engine the way the benchmark does: the first conv ends dense,
    every other layer at the target (C-GaP's K=4 partitions fit the 4 layers left)."""
    from growprune.train.engine import Trainer

    tier = TIERS["smoke"]
    (spec,) = [s for s in table_specs(tier, ["cgap"], [0.8])]
    recipe = validate_recipe(build_recipe_dict(spec, tier, 1))
    trainer = Trainer(recipe, tmp_path / "run", progress=False)
    final = trainer.run()
    weights = {n: p for n, p in trainer.model.named_parameters() if n.endswith("weight") and p.dim() > 1}
    assert bool((weights.pop("features.0.weight") != 0).all())
    for name, weight in weights.items():
        assert abs(float((weight == 0).float().mean()) - 0.8) < 0.01, name
    assert abs(final["sparsity"] - 0.8) < 0.01


def test_runs_under_two_conventions_are_kept_apart(tmp_path) -> None:
    """A first-dense run is not skipped because the same cell exists under `all`, and rows record
    their convention (rows written before conventions existed read as `all`)."""
    quick = TIERS["quick"]
    old = dataclasses.replace(quick, layers="all")
    (new_spec,) = table_specs(quick, ["gmp"], [0.8])
    (old_spec,) = table_specs(old, ["gmp"], [0.8])
    assert new_spec.key() != old_spec.key()
    out = tmp_path / "rows.jsonl"
    where = {
        "device": "cpu",
        "commit": "0" * 40,
        "dirty": False,
        "threads": 1,
        "parallel_jobs": 1,
        "machine": {},
    }
    result = {
        "epochs": 6.0,
        "top1": 0.9,
        "final_sparsity": 0.8,
        "train_seconds": 1.0,
        "method_config": {},
        "schedule": {},
    }
    row = make_row(old_spec, old, result, where, 1.0)
    assert row["layers"] == "all"
    del row["layers"]  # as the rows committed before the convention
    out.write_text(__import__("json").dumps(row) + "\n")
    assert old_spec.key() in existing_keys(out) and new_spec.key() not in existing_keys(out)
    assert make_row(new_spec, quick, result, where, 1.0)["layers"] == "first-dense"


def test_study_partitions_fit_the_layers_left() -> None:
    """K may not exceed the prunable layers: 5 in SmallCNN, 4 with the first conv dense."""
    quick = TIERS["quick"]
    ks = {s.overrides.get("method.partitions") for s in study_specs(quick)} - {None}
    assert max(ks) <= 4
    assert (
        max(
            {
                s.overrides.get("method.partitions")
                for s in study_specs(dataclasses.replace(quick, layers="all"))
            }
            - {None}
        )
        == 5
    )


def row(
    method: str, sparsity: float, top1: float, layers: str | None, variant: str = "", seed: int = 0
) -> dict[str, Any]:
    return quality_row(method, sparsity, top1, variant=variant, seed=seed, layers=layers)


def test_tables_keep_rows_of_another_convention_apart() -> None:
    rows = [
        row("dense", 0.0, 0.90, "all"),
        row("cgap", 0.8, 0.85, None),  # committed before conventions: every layer pruned
        row("cgap", 0.8, 0.88, "first-dense"),
        row("gmp", 0.8, 0.87, "first-dense"),
        row("dense", 0.0, 0.91, None, variant="budget:24"),
        row("cgap", 0.8, 0.89, None, variant="budget:24"),
    ]
    assert [table_tier(r) for r in rows] == ["quick", "quick@all", "quick", "quick", "quick", "quick@all"]
    placed = by_convention(rows)
    dense_homes = sorted(r["tier"] for r in placed if r["method"] == "dense" and not r["variant"])
    assert dense_homes == ["quick", "quick@all"]  # dense prunes nothing: the dense row of both tables
    budget_dense = [r["tier"] for r in placed if r["method"] == "dense" and r["variant"]]
    assert budget_dense == ["quick@all"]  # only where that budget was swept
    current = "\n".join(quality_table(placed, "quick"))
    on_record = "\n".join(quality_table(placed, "quick@all"))
    assert "| C-GaP | 88.00 |" in current and "85.00" not in current
    assert "| C-GaP | 85.00 |" in on_record and "88.00" not in on_record
    assert "| dense | 90.00 |" in current and "| dense | 90.00 |" in on_record
    assert "Layers: `first-dense`" in current and "layer convention `all` (on record" in on_record
    lines = "\n".join(cgap_target_lines(placed, "quick"))
    assert (
        "C-GaP at 80% within 0.3 points of dense or better: **missed** (C-GaP 88.00 vs dense 90.00" in lines
    )
    assert "C-GaP at 80% at least as accurate as every baseline at equal budget: **met**" in lines


def test_rigl_torch_under_first_dense_keeps_only_its_first_layer_dense() -> None:
    _, layers = rigl_torch_layers(first_layer_dense=True)
    assert bool((layers[0].weight != 0).all())
    for layer in layers[1:]:
        zeros, n = int((layer.weight == 0).sum()), layer.weight.numel()
        assert abs(zeros - int(0.8 * n)) <= 1, layer


def test_rigl_torch_refuses_a_convention_it_cannot_follow(tmp_path) -> None:
    if importlib.util.find_spec("rigl_torch") is None:
        pytest.skip("rigl-torch (the `bench` extra) is not installed")
    from benchmarks.quality import run_rigl_torch

    tier = TIERS["smoke"]
    recipe = build_recipe_dict(
        RunSpec("smoke", "rigl-torch", 0.8, "uniform", 0, layers="first-dense"), tier, 1
    )
    recipe["method"]["exclude"] = ["classifier.weight"]
    with pytest.raises(SystemExit, match="only the first layer"):
        run_rigl_torch(recipe, tmp_path / "run", 0.8)
