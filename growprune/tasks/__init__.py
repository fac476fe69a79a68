"""Tasks: what differs between problems (data, model, loss, scoring); the training loop is shared.

Each task is one folder, ``growprune/tasks/<task>/`` (its Task class in ``task.py``, data
readers and generators, model, metric, report section and bundled recipes), declared by one line
of the registry (:mod:`growprune.tasks.registry`). :func:`build_task` asks the registry which task
the recipe's ``data.name`` trains and has that task build itself from the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from growprune.tasks.registry import TASKS, TaskSpec, bundled_recipes, task_for_dataset, task_named

if TYPE_CHECKING:
    import torch

    from growprune.tasks.base import DataSettings, Task

__all__ = [
    "TASKS",
    "Batch",
    "BatchLoader",
    "DataSettings",
    "Task",
    "TaskRequest",
    "TaskSpec",
    "accepted_defaults",
    "build_task",
    "bundled_recipes",
    "check_model_fits",
    "task_for_dataset",
    "task_named",
]

# The task interface (torch) loads on first use: the CLI reads the registry without importing torch.
_BASE_NAMES = {"Batch", "BatchLoader", "DataSettings", "Task", "TaskRequest"}
_BASE_NAMES |= {"accepted_defaults", "check_model_fits"}


def __getattr__(name: str) -> Any:
    if name in _BASE_NAMES:
        from growprune.tasks import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_task(
    data: DataSettings,
    evaluation: Any,
    device: torch.device,
    batch_size: int,
    *,
    seed: int,
    eval_batch_size: int,
    label_smoothing: float = 0.0,
    smoke: bool = False,
) -> Task:
    """The task ``data`` describes, its data already on ``device``.

    Args:
        data: the data settings (dataset name and arguments, directory, augmentation).
        evaluation: the task's own evaluation settings (its registry entry's ``evaluation``), or None.
        device: where the data is put.
        batch_size: training batch size.
        seed: base seed of the data order and augmentation.
        eval_batch_size: batch size of evaluation.
        label_smoothing: of the training loss.
        smoke: a tiny slice of the data, to check that every part runs.

    Raises:
        ValueError / TypeError: bad ``data`` settings (the engine turns them into a RecipeError).
    """
    from growprune.tasks.base import TaskRequest

    request = TaskRequest(
        data=data,
        evaluation=evaluation,
        device=device,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        label_smoothing=label_smoothing,
        smoke=smoke,
    )
    return task_for_dataset(data.name).load().from_request(request)
