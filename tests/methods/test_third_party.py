"""A method written outside growprune and registered with one call works everywhere a built-in does.

The plugin below is a file in a temporary folder, loaded by the CLI through ``GROWPRUNE_PLUGINS``
exactly as a user's package would be (or through the ``growprune.plugins`` entry points): it must
train from a recipe, be listed by ``growprune list``, be accepted with its own recipe keys (and
typos in them refused), and get its title in the run report.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import growprune as gp
from growprune.methods import METHODS
from growprune.methods.settings import MethodSettings, RunLength, bounded
from growprune.records import FinalRecord, MaskEvent, read_records
from growprune.train.recipe import RecipeError, sparsifier_arguments, validate_recipe
from tests.helpers import GROWPRUNE, REPO, run_captured

PLUGIN = textwrap.dedent(
    '''
    """A third-party method: magnitude pruning at a chosen epoch, in steps ever after."""
    from dataclasses import dataclass

    import growprune
    from growprune.methods import MethodSettings, Sparsifier
    from growprune.methods.settings import bounded
    from growprune.records import Phase


    @dataclass(kw_only=True)
    class LatePruneSettings(MethodSettings):
        prune_epoch: float = bounded(1.0, ge=0)


    @growprune.register_method
    class LatePrune(Sparsifier):
        method = "lateprune"
        title = "Late Prune (plugin)"
        settings = LatePruneSettings

        def __init__(self, model, optimizer, *, prune_step=0, **kwargs):
            self.prune_step = prune_step
            super().__init__(model, optimizer, **kwargs)

        @classmethod
        def arguments_from(cls, settings, run):
            return {"prune_step": run.steps(settings.prune_epoch)}

        def on_step(self, step):
            if step == self.prune_step:
                self.change_masks(self.compute_masks(self.names, self.magnitude_scores(self.names)), "prune")

        def describe_phase(self, step):
            return Phase("dense" if step < self.prune_step else "finetune", step)
    '''
)

RECIPE = textwrap.dedent(
    """
    name: lateprune-smoke
    data: {name: fashion_mnist}
    model: {name: small_cnn}
    method: {name: lateprune, sparsity: 0.6, prune_epoch: 1}
    training: {epochs: 2}
    output: {tensorboard: false}
    """
)


def run_cli(args: list[str], plugin_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(REPO)]),
        "GROWPRUNE_PLUGINS": "lateprune_plugin",
    }
    return run_captured([*GROWPRUNE, *args], env=env, cwd=cwd, timeout=600)


def test_plugin_method_trains_from_a_recipe_is_listed_and_titled(tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "lateprune_plugin.py").write_text(PLUGIN)
    recipe = tmp_path / "lateprune.yaml"
    recipe.write_text(RECIPE)

    listed = run_cli(["list"], plugin_dir, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "lateprune" in listed.stdout

    typo = run_cli(["train", str(recipe), "--smoke", "--set", "method.prune_epok=1"], plugin_dir, tmp_path)
    assert typo.returncode == 2 and "did you mean 'prune_epoch'" in typo.stderr, typo.stderr

    out = tmp_path / "run"
    trained = run_cli(
        ["train", str(recipe), "--smoke", "--out", str(out), "--no-progress"], plugin_dir, tmp_path
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    records = read_records(out / "metrics.jsonl").records
    final = next(r for r in records if isinstance(r, FinalRecord))
    assert final.sparsity == pytest.approx(0.6, abs=0.01)  # pruned at epoch 1 of 2
    assert any(isinstance(r, MaskEvent) and r.event == "prune" for r in records)
    report = (out / "report" / "report.md").read_text()
    assert report.splitlines()[0].startswith("# Late Prune (plugin)")


def test_plugin_missing_is_one_line(tmp_path: Path) -> None:
    result = run_cli(["list"], tmp_path, tmp_path)  # GROWPRUNE_PLUGINS names a module that is not there
    assert result.returncode != 0
    assert "lateprune_plugin" in result.stderr and "Traceback" not in result.stderr


class Halve(gp.Sparsifier):
    method = "halve_test"
    title = "Halve"

    @classmethod
    def arguments_from(cls, settings: MethodSettings, run: RunLength) -> dict[str, object]:
        return {}


def test_register_method_makes_recipes_accept_it_and_refuses_a_taken_name() -> None:
    gp.register_method(Halve)
    try:
        recipe = validate_recipe(
            {"method": {"name": "halve_test", "sparsity": 0.5}, "training": {"epochs": 1}}
        )
        kwargs = sparsifier_arguments(recipe.method, RunLength(10, 10), seed=0)
        model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        sparsifier = Halve(model, torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)
        assert sparsifier.sparsity == 0.5
        with pytest.raises(RecipeError, match="unknown key 'method.prune_epoch'"):
            validate_recipe({"method": {"name": "halve_test", "prune_epoch": 1}, "training": {"epochs": 1}})

        class Impostor(gp.Sparsifier):
            method = "cgap"

        with pytest.raises(ValueError, match="'cgap' is taken"):
            gp.register_method(Impostor)
        gp.register_method(Halve)  # the same class again is harmless
    finally:
        METHODS.pop("halve_test", None)
    with pytest.raises(RecipeError, match="unknown method 'halve_test'"):
        validate_recipe({"method": {"name": "halve_test"}, "training": {"epochs": 1}})


def test_settings_bounds_become_recipe_validation() -> None:
    from dataclasses import dataclass

    @dataclass(kw_only=True)
    class Bounded(MethodSettings):
        every_epochs: float = bounded(0.5, gt=0)

    class WithSettings(gp.Sparsifier):
        method = "bounded_test"
        settings = Bounded

    gp.register_method(WithSettings)
    try:
        with pytest.raises(RecipeError, match="method.every_epochs: Input should be greater than 0"):
            validate_recipe(
                {"method": {"name": "bounded_test", "every_epochs": 0}, "training": {"epochs": 1}}
            )
    finally:
        METHODS.pop("bounded_test", None)


def test_a_declared_step_argument_is_a_recipe_key_a_callback_default_and_config() -> None:
    """A third-party method that declares its step argument once gets the rest derived: the
    constructor's check, the recipe key in epochs (validated, converted, defaulted from the run),
    the callbacks' default from the run's length, the defaults table and config()."""
    from growprune.integrations.schedule import defaults_table, schedule_kwargs
    from tests.methods.midway import midway_method

    Midway = midway_method("midway_test")
    gp.register_method(Midway)
    try:
        model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        with pytest.raises(ValueError, match="prune_step must be an integer >= 1, got 0"):
            Midway(model, optimizer, prune_step=0)
        recipe = validate_recipe(
            {"method": {"name": "midway_test", "prune_epoch": 2}, "training": {"epochs": 4}}
        )
        assert sparsifier_arguments(recipe.method, RunLength(10, 40), seed=0)["prune_step"] == 20
        recipe = validate_recipe({"method": {"name": "midway_test"}, "training": {"epochs": 4}})
        assert sparsifier_arguments(recipe.method, RunLength(10, 40), seed=0)["prune_step"] == 20
        assert schedule_kwargs("midway_test", {}, 40) == {"prune_step": 20}
        with pytest.raises(ValueError, match="prune_step=50 is beyond the run's 40"):
            schedule_kwargs("midway_test", {"prune_step": 50}, 40)
        with pytest.raises(RecipeError, match="method.prune_epoch: Input should be greater than 0"):
            validate_recipe({"method": {"name": "midway_test", "prune_epoch": 0}, "training": {"epochs": 4}})
        assert defaults_table()["midway_test"] == {"prune_step": "max(1, 0.5 T)"}
        sparsifier = Midway(model, optimizer, sparsity=0.5, prune_step=3)
        assert sparsifier.config()["prune_step"] == 3
    finally:
        METHODS.pop("midway_test", None)
