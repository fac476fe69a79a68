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
    """Each bundled recipe is what its file name says: <task>/<method>[-...][-<sparsity %>], or
    <task>/<method>[-...]-<N><M> for an N:M pattern (``cgap-24``: 2:4)."""
    recipe = load_recipe(path)
    task, stem = path.parent.name, path.stem
    assert recipe.name == f"{task}-{stem}"
    assert recipe.method.name == stem.split("-")[0]
    suffix = stem.rsplit("-", 1)[-1]
    pattern = recipe.method.pattern
    if pattern != "unstructured":
        assert suffix == pattern.replace(":", ""), (
            f"an N:M recipe's name ends in -<N><M>, got {stem!r} for {pattern}"
        )
    elif suffix.isdigit():
        assert recipe.method.sparsity == pytest.approx(int(suffix) / 100)
    assert recipe.training.epochs is not None and recipe.training.epochs > 0


def test_bad_yaml_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: {name: cgap\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)


BIBLE = {"name": "bible"}
COCO = {"name": "coco_shapes"}


@pytest.mark.parametrize(
    ("data", "evaluation", "message"),
    [
        (
            BIBLE,
            {"beam_sise": 2},
            "unknown key 'evaluation.beam_sise'; did you mean 'beam_size'? "
            "(allowed here: beam_size, length_penalty, epoch_sentences, examples)",
        ),
        (BIBLE, {"beam_size": 0}, "evaluation.beam_size"),
        (COCO, {"nms_iou": 0}, "evaluation.nms_iou"),
        (COCO, {"nms": 0.5}, "did you mean 'nms_iou'?"),
        ({"name": "fashion_mnist"}, {"top_k": 5}, "unknown key 'evaluation.top_k' (allowed here: )"),
    ],
)
def test_evaluation_keys_are_the_tasks_own(data: dict, evaluation: dict, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        validate_recipe({"data": data, "method": {**GAP}, "evaluation": evaluation})
    assert message in str(info.value)


def test_evaluation_settings_reach_the_task_as_its_dataclass() -> None:
    from growprune.tasks.detection.settings import DetectionEvaluation
    from growprune.tasks.translation.settings import TranslationEvaluation
    from growprune.train.recipe import evaluation_settings

    recipe = validate_recipe({"data": BIBLE, "method": {**GAP}, "evaluation": {"beam_size": 2}})
    assert evaluation_settings(recipe) == TranslationEvaluation(beam_size=2)
    recipe = validate_recipe({"data": COCO, "method": {**GAP}, "evaluation": {"max_detections": 7}})
    assert evaluation_settings(recipe) == DetectionEvaluation(max_detections=7)
    assert evaluation_settings(validate_recipe({"method": {**GAP}})) is None  # classification takes none
    # the run directory's recipe.yaml holds the task's keys only, defaults filled in
    assert recipe.model_dump()["evaluation"] == {
        "score_threshold": 0.01,
        "nms_iou": 0.45,
        "max_detections": 7,
        "examples": 5,
    }


def test_another_tasks_evaluation_keys_are_ignored_with_a_warning() -> None:
    """Recipes and run directories from before each task declared its keys held every task's."""
    old = {"beam_size": 3, "length_penalty": 0.6, "score_threshold": 0.01, "nms_iou": 0.45, "examples": 2}
    ignored = r"evaluation: nms_iou \(detection\), score_threshold \(detection\) belong to other tasks'"
    with pytest.warns(UserWarning, match=ignored):
        recipe = validate_recipe({"data": BIBLE, "method": {**GAP}, "evaluation": dict(old)})
    assert recipe.evaluation.beam_size == 3 and recipe.evaluation.examples == 2
    ignored = r"beam_size \(translation\), examples \(translation, detection\), length_penalty"
    with pytest.warns(UserWarning, match=ignored):
        validate_recipe({"method": {**GAP}, "evaluation": dict(old)})
