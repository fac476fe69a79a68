"""Tasks: what differs between problems (data, loss, scoring); the training loop is shared.

:func:`build_task` picks the task from the recipe's ``data.name``: translation corpora give a
:class:`~growprune.tasks.translation.TranslationTask`, every other dataset a
:class:`~growprune.tasks.classification.ClassificationTask`.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from growprune.data.loader import Augment
from growprune.data.registry import build_datasets
from growprune.tasks.base import Batch, BatchLoader, Task, accepted_defaults, check_model_fits
from growprune.tasks.classification import ClassificationTask

__all__ = [
    "PARTSEG_DATASETS",
    "TRANSLATION_DATASETS",
    "Batch",
    "BatchLoader",
    "ClassificationTask",
    "DataSettings",
    "EvaluationSettings",
    "Task",
    "accepted_defaults",
    "build_task",
    "check_model_fits",
]

TRANSLATION_DATASETS = ("bible",)
PARTSEG_DATASETS = ("shapenet_part",)
SMOKE_TRAIN_ITEMS = 256
SMOKE_TEST_ITEMS = 256
# Translation smoke runs keep the recipe's model and schedule but train on the shortest pairs,
# one batch per epoch, and decode a handful of sentences: the point is that every part runs.
SMOKE_TRAIN_PAIRS = 64
SMOKE_SENTENCES = 8
# Part-segmentation smoke runs read the first shapes of each split, sampled to few points.
SMOKE_PART_SHAPES = 8
SMOKE_PART_POINTS = 64


class DataSettings(Protocol):
    """What :func:`build_task` reads of the data settings (a recipe's ``data:`` section)."""

    name: str
    data_dir: str | None
    root: str | None
    random_crop: bool
    crop_padding: int
    hflip: bool
    args: dict[str, Any]


class EvaluationSettings(Protocol):
    """How a translation model is decoded and scored (a recipe's ``evaluation:`` section)."""

    beam_size: int
    length_penalty: float
    epoch_sentences: int | None
    examples: int


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
        evaluation: decoding and scoring settings (translation; classification ignores them).
        device: where the data is put.
        batch_size: training batch size.
        seed: base seed of the data order and augmentation.
        eval_batch_size: batch size of evaluation.
        label_smoothing: of the training loss.
        smoke: a tiny slice of the data, to check that every part runs.

    Raises:
        ValueError / TypeError: bad ``data`` settings (the engine turns them into a RecipeError).
    """
    args: dict[str, Any] = dict(data.args)
    if data.data_dir is not None:
        args["data_dir" if data.name not in TRANSLATION_DATASETS + PARTSEG_DATASETS else "cache_dir"] = (
            data.data_dir
        )
    if getattr(data, "root", None) is not None:
        if data.name not in PARTSEG_DATASETS:
            raise ValueError(
                f"root names a ShapeNet-Part folder (data.name: shapenet_part), not {data.name!r} data"
            )
        args["root"] = data.root
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "eval_batch_size": eval_batch_size,
        "seed": seed,
        "label_smoothing": label_smoothing,
    }
    if data.name in TRANSLATION_DATASETS:
        return _translation_task(data, evaluation, device, smoke, args, common)
    if data.name in PARTSEG_DATASETS:
        return _partseg_task(data, device, smoke, args, common)
    subsets = {"train_subset": SMOKE_TRAIN_ITEMS, "test_subset": SMOKE_TEST_ITEMS} if smoke else {}
    train, test = build_datasets(data.name, **subsets, **args)
    train, test = train.to(device), test.to(device)
    augment = Augment(
        crop_padding=data.crop_padding if data.random_crop else 0,
        hflip=data.hflip,
        fill=float(getattr(train, "pad_value", 0.0)),
    )
    return ClassificationTask(train, test, augment=augment, **common)


def _translation_task(
    settings: DataSettings,
    ev: EvaluationSettings,
    device: torch.device,
    smoke: bool,
    args: dict[str, Any],
    common: dict[str, Any],
) -> Task:
    from growprune.data.registry import check_kwargs
    from growprune.data.translation import load_bible_translation
    from growprune.tasks.translation import TranslationTask

    if settings.random_crop or settings.hflip:
        raise ValueError("random_crop and hflip are image augmentations; remove them for translation")
    check_kwargs("dataset", settings.name, load_bible_translation, args)
    data = load_bible_translation(**args)
    if smoke:
        data.train = data.train.shortest(max(SMOKE_TRAIN_PAIRS, common["batch_size"]))
        data.valid = data.valid.shortest(SMOKE_SENTENCES)
        data.test = data.test.shortest(SMOKE_SENTENCES)
    data.train, data.valid, data.test = (s.to(device) for s in (data.train, data.valid, data.test))
    return TranslationTask(
        data,
        **common,
        beam_size=min(ev.beam_size, 2) if smoke else ev.beam_size,
        length_penalty=ev.length_penalty,
        epoch_sentences=ev.epoch_sentences,
        examples=ev.examples,
    )


def _partseg_task(
    settings: DataSettings, device: torch.device, smoke: bool, args: dict[str, Any], common: dict[str, Any]
) -> Task:
    from growprune.data.partseg import load_part_segmentation
    from growprune.data.registry import check_kwargs
    from growprune.tasks.partseg import PartSegTask

    if settings.random_crop or settings.hflip:
        raise ValueError(
            "random_crop and hflip are image augmentations; part segmentation uses data.args.scale/jitter"
        )
    check_kwargs("dataset", settings.name, load_part_segmentation, args)
    if smoke:
        args["points"] = min(int(args.get("points", SMOKE_PART_POINTS)), SMOKE_PART_POINTS)
        args["limit"] = SMOKE_PART_SHAPES
    data = load_part_segmentation(**args)
    if smoke:  # a small folder of the user's may hold fewer training shapes than one batch
        common = {**common, "batch_size": min(common["batch_size"], len(data.train))}
    data.train, data.val, data.test = (s.to(device) for s in (data.train, data.val, data.test))
    return PartSegTask(data, **common)
