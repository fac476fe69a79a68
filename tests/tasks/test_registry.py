"""The task registry: one entry per task, asked by the engine, the CLI and the report."""

from __future__ import annotations

import string
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from growprune.records import EpochRecord, FinalRecord, StartRecord
from growprune.report.run import RunData, run_task, summary_table
from growprune.tasks import TASKS, Task, TaskSpec, build_task, task_for_dataset, task_named


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_declares_what_the_others_read(name: str, tmp_path: Path) -> None:
    spec = TASKS[name]
    assert spec.report_section(tmp_path, [], None) == []  # resolves; nothing to say of an empty run
    task_class = spec.load()
    assert issubclass(task_class, Task) and task_class.from_request is not Task.from_request
    fields = {f for _, f, _, _ in string.Formatter().parse(spec.done_text) if f}
    assert task_class.final_metric in fields, "the done line shows the score the run is judged by"
    keys = {score.key for score in spec.summary}
    assert {task_class.final_metric, task_class.primary_metric} <= keys


def test_datasets_belong_to_one_task_and_the_rest_are_classification() -> None:
    seen: dict[str, str] = {}
    for spec in TASKS.values():
        for dataset in spec.datasets:
            assert dataset not in seen, f"{dataset} is claimed by {seen[dataset]} and {spec.name}"
            seen[dataset] = spec.name
    assert {d: task_for_dataset(d).name for d in ("bible", "coco", "coco_shapes", "shapenet_part")} == {
        "bible": "translation",
        "coco": "detection",
        "coco_shapes": "detection",
        "shapenet_part": "partseg",
    }
    assert task_for_dataset("fashion_mnist").name == "classification"
    assert task_for_dataset("not-a-dataset").name == "classification"  # the data registry refuses it
    with pytest.raises(ValueError, match="unknown task 'nope'; known: classification, detection"):
        task_named("nope")


# A made-up task in a folder of its own, as a new task is added: its module (Task class and model)
# and its recipes beside it; the registry line below is all that is added anywhere else.
COUNTING_TASK = """
from typing import Any

import torch
from torch import nn

from growprune.tasks.base import Batch, Task, TaskRequest


class Counter(nn.Module):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 1)


class CountingTask(Task):
    primary_metric = final_metric = "count"

    def __init__(self, request: TaskRequest) -> None:
        self.request = request

    @classmethod
    def from_request(cls, request: TaskRequest) -> "CountingTask":
        return cls(request)

    def model_defaults(self) -> dict[str, Any]:
        return {"width": 3}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        return {"count": 1.0}

    def worker_loader(self, seed: int) -> Any:
        raise NotImplementedError
"""


def test_a_new_task_is_its_folder_and_one_registry_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from growprune.cli import main
    from growprune.models import build_model, list_models
    from growprune.tasks.registry import SummaryScore, bundled_recipes

    folder = tmp_path / "counting"
    (folder / "recipes" / "counts").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "task.py").write_text(COUNTING_TASK)
    recipe = "name: counts-dense\nmodel: {name: counter}\ndata: {name: counts}\nmethod: {name: dense}\n"
    (folder / "recipes" / "counts" / "dense.yaml").write_text(recipe)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = TaskSpec(
        name="counting",
        description="counting",
        datasets=("counts",),
        task_class="counting.task:CountingTask",
        done_text="count {count:.0f}",
        summary=(
            SummaryScore("final count", "count", ".0f"),
            SummaryScore("best count", "count", ".0f", of="best"),
        ),
        models={"counter": "counting.task:Counter"},
    )
    monkeypatch.setitem(TASKS, "counting", spec)

    assert (
        spec.folder == folder
        and bundled_recipes()["counts/dense"] == folder / "recipes" / "counts" / "dense.yaml"
    )
    assert "counter" in list_models() and build_model("counter", width=5).fc.in_features == 5
    data = SimpleNamespace(name="counts", args={}, data_dir=None, root=None)
    task = build_task(data, SimpleNamespace(), torch.device("cpu"), 4, seed=1, eval_batch_size=8, smoke=True)
    assert type(task).__name__ == "CountingTask" and task.request.smoke and task.request.batch_size == 4
    assert task_named("counting").describe_scores({"count": 3.0}) == "count 3"
    run = RunData(run_dir=None)  # type: ignore[arg-type]
    run.start = StartRecord("dense", "dense", 1, 1, 1, task="counting")
    run.epochs = [EpochRecord(1.0, 1, None, None, {"count": 2.0}, 0.0, {}, None, None, None)]
    run.final = FinalRecord(1, {"count": 3.0}, "count", 0.0, None, None, None, task="counting")
    table = "\n".join(summary_table(run))
    assert "| final count | 3 |" in table and "| best count | 2 |" in table
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "counts (counting)" in listed and "  counts/dense\n" in listed and "counter" in listed


def test_a_recipe_name_two_tasks_bundle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from growprune.tasks.registry import bundled_recipes

    (tmp_path / "twin" / "recipes" / "fmnist").mkdir(parents=True)
    (tmp_path / "twin" / "__init__.py").write_text("")
    (tmp_path / "twin" / "task.py").write_text("")
    (tmp_path / "twin" / "recipes" / "fmnist" / "dense.yaml").write_text("name: x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    twin = TaskSpec("twin", "twin", ("twins",), "twin.task:Twin", "", ())
    monkeypatch.setitem(TASKS, "twin", twin)
    with pytest.raises(ValueError, match="bundled recipe 'fmnist/dense' is in two task folders"):
        bundled_recipes()


def test_a_run_from_before_records_named_their_task_reports_by_its_recipe() -> None:
    run = RunData(run_dir=None, recipe={"data": {"name": "bible"}})  # type: ignore[arg-type]
    assert run_task(run).name == "translation"
    assert run_task(RunData(run_dir=None)).name == "classification"  # type: ignore[arg-type]
