"""Tasks: what differs between problems (data, loss, scoring); the training loop is shared.

:func:`build_task` picks the task from the recipe's ``data.name``: translation corpora give a
:class:`~growprune.tasks.translation.TranslationTask`, COCO-format detection sets a
:class:`~growprune.tasks.detection.DetectionTask`, every other dataset a
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
    "DETECTION_DATASETS",
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
# coco: a COCO-format folder (data.root, else $GROWPRUNE_COCO); coco_shapes: the generated set in
# that format, unless data.root names a folder to read instead.
DETECTION_DATASETS = ("coco", "coco_shapes")
PARTSEG_DATASETS = ("shapenet_part",)
SMOKE_TRAIN_ITEMS = 256
SMOKE_TEST_ITEMS = 256
# Translation smoke runs keep the recipe's model and schedule but train on the shortest pairs,
# one batch per epoch, and decode a handful of sentences: the point is that every part runs.
SMOKE_TRAIN_PAIRS = 64
SMOKE_SENTENCES = 8
# Detection smoke runs keep the schedule but train on one batch of 8 images per epoch and score
# 4 validation images: an SSD step costs ~25 ms per image on one core.
SMOKE_DETECTION_BATCH = 8
SMOKE_VAL_IMAGES = 4
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
    score_threshold: float
    nms_iou: float
    max_detections: int


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
    if data.name in DETECTION_DATASETS:
        return _detection_task(data, evaluation, device, smoke, args, batch_size, eval_batch_size, seed)
    if data.data_dir is not None:
        args["data_dir" if data.name not in TRANSLATION_DATASETS + PARTSEG_DATASETS else "cache_dir"] = (
            data.data_dir
        )
    if getattr(data, "root", None) is not None:
        if data.name not in PARTSEG_DATASETS:
            raise ValueError(
                f"root names a dataset's own folder (ShapeNet-Part or COCO-format detection data), "
                f"not {data.name!r} data; use data.data_dir here"
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


def _detection_task(
    settings: DataSettings,
    ev: EvaluationSettings,
    device: torch.device,
    smoke: bool,
    args: dict[str, Any],
    batch_size: int,
    eval_batch_size: int,
    seed: int,
) -> Task:
    from growprune.data.coco import find_root, load_coco_detection
    from growprune.data.registry import check_kwargs
    from growprune.data.shapes import generated_root
    from growprune.tasks.detection import DetectionTask

    if settings.random_crop:
        raise ValueError("random_crop does not move the boxes; remove it for detection (hflip is supported)")
    generator_keys = ("n_train", "n_val", "generator_seed", "cache_dir")
    generator = {key: args.pop(key) for key in generator_keys if key in args}
    check_kwargs("dataset", settings.name, load_coco_detection, {"root": None, **args})
    root = find_root(args.pop("root", None) or settings.root or settings.data_dir)
    if root is None:
        if settings.name == "coco":
            raise ValueError(
                "data.name coco needs the dataset folder: set data.root (or $GROWPRUNE_COCO) to a folder "
                "with annotations/instances_train2017.json, annotations/instances_val2017.json, train2017/ "
                "and val2017/ (or use data.name coco_shapes for the generated set)"
            )
        if "generator_seed" in generator:
            generator["seed"] = generator.pop("generator_seed")
        check_kwargs("dataset", settings.name, generated_root, generator)
        root = generated_root(**generator)
    elif generator:
        raise ValueError(
            f"{', '.join(sorted(generator))} shape the generated set; data.root {root} is read as it is"
        )
    if smoke:
        batch_size = min(batch_size, SMOKE_DETECTION_BATCH)
        args["train_limit"] = batch_size
        args["val_limit"] = SMOKE_VAL_IMAGES
    data = load_coco_detection(root, **args)
    if smoke:  # a folder smaller than one smoke batch still runs
        batch_size = min(batch_size, len(data.train))
    data.train.to(device)
    data.val.to(device)
    return DetectionTask(
        data,
        batch_size=batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        hflip=settings.hflip,
        score_threshold=ev.score_threshold,
        nms_iou=ev.nms_iou,
        max_detections=ev.max_detections,
        examples=min(ev.examples, 4),
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
