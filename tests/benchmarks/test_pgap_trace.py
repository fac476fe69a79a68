"""The P-GaP trace runs on the smoke tier, sees every worker phase and merge, and changes nothing:
its final accuracy is the one the same recipe gives through an uninstrumented Trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.pgap_trace import main
from benchmarks.quality import TIERS, RunSpec, build_recipe_dict, with_budget
from growprune.train.engine import Trainer
from growprune.train.recipe import validate_recipe

# 6 epochs instead of the smoke tier's 2: with 2, a phase is one step and the model stays at chance,
# so an accuracy comparison could not tell a perturbed run from the real one.
EPOCHS, SPARSITY, SEED = 6.0, 0.8, 0


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("pgap_trace") / "trace.json"
    argv = ["--smoke", "--out", str(out), "--epochs", str(EPOCHS), "--sparsity", str(SPARSITY)]
    assert main([*argv, "--seeds", str(SEED), "--layers", "all", "--recal-batches", "10"]) == 0
    record = json.loads(out.read_text())
    assert record["commit"] and record["command"].startswith("python -m benchmarks.pgap_trace --smoke")
    (run,) = record["runs"]
    return run


def test_every_worker_phase_and_merge_is_traced(run: dict) -> None:
    k, rounds = run["workers_per_round"], run["rounds"]
    assert (k, rounds) == (2, 4)
    order = [(w["round"], w["worker"]) for w in run["workers"]]
    assert order == [(r, w) for r in range(1, rounds + 1) for w in range(1, k + 1)]
    assert [m["round"] for m in run["merges"]] == list(range(1, rounds + 1))
    accs = [w["acc"] for w in run["workers"]]
    for m in run["merges"]:
        accs += [m[key] for key in ("acc_merged", "acc_merged_recal", "acc_pruned", "acc_pruned_recal")]
        # each partition comes from the worker that trained it dense: the merged model is mostly dense
        assert m["merged_nonzero_share"] > 1 - SPARSITY
        assert set(m["bn_stats_error"]) == {"features.1", "features.5", "features.8", "features.12"}
    assert all(0.0 <= a <= 1.0 for a in accs)


def test_every_merge_prunes_each_layer_to_its_target(run: dict) -> None:
    assert run["first_layer"] == {"name": "features.0.weight", "numel": 36, "pruned": True}
    for m in run["merges"]:
        layers = {layer["name"]: layer for layer in m["layers"]}
        assert len(layers) == 5 and layers["classifier.weight"]["partition"] == 2
        for layer in layers.values():
            assert abs(layer["kept"] - round((1 - layer["target_sparsity"]) * layer["numel"])) <= 1
            assert layer["churn"] is not None and 0.0 <= layer["churn"] <= 1.0
        assert m["first_layer_kept"] == layers["features.0.weight"]["kept"]


def test_trace_matches_the_trainer(run: dict, tmp_path: Path) -> None:
    """The trainer's own evaluation after each merge saw what the trace calls the pruned model, and
    the traced run ends where the same recipe ends without the trace."""
    for m in run["merges"]:
        after = [e for e in run["trainer_evals"] if e["step"] == m["step"] and not e["final"]]
        assert after and after[0]["test_acc"] == m["acc_pruned"]
    assert run["trainer_evals"][-1]["final"] and run["trainer_evals"][-1]["test_acc"] == run["top1"]
    assert run["summary"]["first_layer_kept"] == [m["first_layer_kept"] for m in run["merges"]]

    tier = with_budget(TIERS["smoke"], EPOCHS)
    spec = RunSpec("smoke", "pgap", SPARSITY, "uniform", SEED, layers="all")
    recipe = validate_recipe(build_recipe_dict(spec, tier, 1))
    final = Trainer(recipe, tmp_path / "plain", progress=False).run()
    assert final["test_acc"] == run["top1"] and final["test_loss"] == run["final_test_loss"]
    assert run["top1"] > 0.5  # learned something, so the comparison above can tell runs apart
