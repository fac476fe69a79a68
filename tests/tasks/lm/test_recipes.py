"""The bundled lm recipes fit their model: targets exist, GaP partitions cover them once, N:M only where
the method keeps it (the full smokes of these recipes are slow; this is the cheap check)."""

from __future__ import annotations

import fnmatch

import pytest

from growprune.methods import get_method
from growprune.sparsity.targets import find_targets
from growprune.tasks.lm.model import build_llama
from growprune.tasks.registry import bundled_recipes
from growprune.train.recipe import load_recipe

LM_RECIPES = {name: path for name, path in bundled_recipes().items() if name.startswith("lm/")}


def test_the_methods_and_levels_asked_for_are_bundled() -> None:
    stems = {name.split("/", 1)[1] for name in LM_RECIPES}
    # the quick setting has one per method: the lm benchmark's quick tier
    expected = {"dense"} | {f"{m}-quick" for m in ("dense", "oneshot", "gmp", "rigl", "cgap", "pgap")}
    expected |= {f"{m}-{level}" for m in ("oneshot", "gmp", "rigl", "cgap", "pgap") for level in ("50", "80")}
    expected |= {f"{m}-24" for m in ("oneshot", "cgap", "pgap")}  # GMP and RigL cannot keep 2:4
    assert stems == expected


@pytest.mark.parametrize("name", sorted(LM_RECIPES))
def test_recipe_fits_its_model(name: str) -> None:
    recipe = load_recipe(LM_RECIPES[name])
    assert recipe.data.name == "bible_en" and recipe.model.name == "llama"
    method = recipe.method
    if method.pattern != "unstructured":
        assert get_method(method.name).supports_nm, f"{name}: {method.name} cannot keep {method.pattern}"
    if method.name == "dense":
        return
    model = build_llama(
        vocab_size=300, context_length=recipe.data.args["context_length"], **recipe.model.args
    )
    targets = [t.name for t in find_targets(model, method.targets)]
    layers = model.config.num_hidden_layers
    assert len(targets) == 7 * layers  # q, k, v, o, gate, up, down of every layer; no embedding or head
    partitions = getattr(method, "partitions", None)
    if partitions:
        for target in targets:
            owners = [
                k for k, group in enumerate(partitions) if any(fnmatch.fnmatch(target, p) for p in group)
            ]
            assert len(owners) == 1, (target, owners)
