"""Tasks: what differs between problems (data, loss, scoring); the training loop is shared.

:func:`build_task` asks the registry (:mod:`growprune.tasks.registry`) which task the recipe's
``data.name`` trains -- translation corpora, COCO-format detection sets, ShapeNet-Part, and
classification for every other dataset -- and has that task build itself from the request.
"""

from __future__ import annotations

import torch

from growprune.tasks.base import (
    Batch,
    BatchLoader,
    DataSettings,
    EvaluationSettings,
    Task,
    TaskRequest,
    accepted_defaults,
    check_model_fits,
)
from growprune.tasks.classification import ClassificationTask
from growprune.tasks.registry import TASKS, TaskSpec, task_for_dataset, task_named

__all__ = [
    "TASKS",
    "Batch",
    "BatchLoader",
    "ClassificationTask",
    "DataSettings",
    "EvaluationSettings",
    "Task",
    "TaskRequest",
    "TaskSpec",
    "accepted_defaults",
    "build_task",
    "check_model_fits",
    "task_for_dataset",
    "task_named",
]


def build_task(
    data: DataSettings,
    evaluation: EvaluationSettings,
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
        evaluation: decoding and scoring settings (translation, detection; others ignore them).
        device: where the data is put.
        batch_size: training batch size.
        seed: base seed of the data order and augmentation.
        eval_batch_size: batch size of evaluation.
        label_smoothing: of the training loss.
        smoke: a tiny slice of the data, to check that every part runs.

    Raises:
        ValueError / TypeError: bad ``data`` settings (the engine turns them into a RecipeError).
    """
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
