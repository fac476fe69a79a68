"""Recipe validation: every mistake becomes one line naming the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from growprune.tasks.registry import bundled_recipes
from growprune.train.recipe import RecipeError, apply_overrides, load_recipe, validate_recipe

GAP = {"name": "cgap", "epochs_per_phase": 1}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"method": {**GAP, "sparsty": 0.8}}, "unknown key 'method.sparsty'; did you mean 'sparsity'?"),
        ({"method": {**GAP, "sparsity": 1.5}}, "method.sparsity: sparsity must be in [0, 1)"),
        ({"method": {**GAP}, "trainng": {}}, "did you mean 'training'?"),
        ({"method": {**GAP}, "training": {"batch_size": "x"}}, "training.batch_size"),
        ({"method": {"name": "rigl"}}, "training.epochs is required"),
        ({"method": {"name": "magic"}}, "unknown method 'magic'"),
        ({"method": {**GAP, "distribution": "erx"}}, "method.distribution"),
        ({"method": {**GAP, "pattern": "4:2"}}, "method.pattern"),
        ({"method": {**GAP}, "optimizer": {"lr": -1}}, "optimizer.lr"),
        ({"method": {**GAP}, "training": {"device": "tpu"}}, "training.device"),
    ],
)
def test_invalid_recipe_messages(data: dict, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        validate_recipe(data)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_overrides_keep_yaml_types() -> None:
    data = apply_overrides(
        {"method": {"name": "cgap"}},
        ["method.sparsity=0.9", "training.deterministic=true", "method.partitions=[['a*'], ['b*']]"],
    )
    assert data["method"]["sparsity"] == 0.9 and data["training"]["deterministic"] is True
    assert data["method"]["partitions"] == [["a*"], ["b*"]]
    with pytest.raises(RecipeError, match="key=value"):
        apply_overrides({}, ["method.sparsity"])


@pytest.mark.parametrize("path", bundled_recipes().values(), ids=lambda p: p.name)
def test_bundled_recipes_validate(path: Path) -> None:
    """Each bundled recipe is what its file name says: <task>/<method>[-...][-<sparsity %>]."""
    recipe = load_recipe(path)
    task, stem = path.parent.name, path.stem
    assert recipe.name == f"{task}-{stem}"
    assert recipe.method.name == stem.split("-")[0]
    percent = stem.rsplit("-", 1)[-1]
    if percent.isdigit():
        assert recipe.method.sparsity == pytest.approx(int(percent) / 100)
    assert recipe.training.epochs is not None and recipe.training.epochs > 0


def test_bad_yaml_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: {name: cgap\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
