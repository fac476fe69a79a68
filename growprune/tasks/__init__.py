"""Tasks: what differs between problems (data, loss, scoring); the training loop is shared.

:func:`build_task` picks the task from the recipe's ``data.name``: translation corpora give a
:class:`~growprune.tasks.translation.TranslationTask`, every other dataset a
:class:`~growprune.tasks.classification.ClassificationTask`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from growprune.data.loader import Augment
from growprune.data.registry import build_datasets
from growprune.tasks.base import Batch, BatchLoader, Task, accepted_defaults, check_model_fits
from growprune.tasks.classification import ClassificationTask

if TYPE_CHECKING:
    from growprune.train.recipe import Recipe

__all__ = [
    "TRANSLATION_DATASETS",
    "Batch",
    "BatchLoader",
    "ClassificationTask",
    "Task",
    "accepted_defaults",
    "build_task",
    "check_model_fits",
]

TRANSLATION_DATASETS = ("bible",)
SMOKE_TRAIN_ITEMS = 256
SMOKE_TEST_ITEMS = 256
# Translation smoke runs keep the recipe's model and schedule but train on the shortest pairs,
# one batch per epoch, and decode a handful of sentences: the point is that every part runs.
SMOKE_TRAIN_PAIRS = 64
SMOKE_SENTENCES = 8


def build_task(recipe: Recipe, device: torch.device, batch_size: int, smoke: bool = False) -> Task:
    """The task a recipe describes, its data already on ``device``.

    Raises:
        ValueError / TypeError: bad ``data`` settings (the engine turns them into a RecipeError).
    """
    data_cfg, cfg = recipe.data, recipe.training
    args: dict[str, Any] = dict(data_cfg.args)
    if data_cfg.data_dir is not None:
        args["data_dir" if data_cfg.name not in TRANSLATION_DATASETS else "cache_dir"] = data_cfg.data_dir
    if data_cfg.name in TRANSLATION_DATASETS:
        return _translation_task(recipe, device, batch_size, smoke, args)
    subsets = {"train_subset": SMOKE_TRAIN_ITEMS, "test_subset": SMOKE_TEST_ITEMS} if smoke else {}
    train, test = build_datasets(data_cfg.name, **subsets, **args)
    train, test = train.to(device), test.to(device)
    augment = Augment(
        crop_padding=data_cfg.crop_padding if data_cfg.random_crop else 0,
        hflip=data_cfg.hflip,
        fill=float(getattr(train, "pad_value", 0.0)),
    )
    return ClassificationTask(
        train,
        test,
        batch_size=batch_size,
        eval_batch_size=cfg.eval_batch_size,
        augment=augment,
        seed=cfg.seed,
        label_smoothing=cfg.label_smoothing,
    )


def _translation_task(
    recipe: Recipe, device: torch.device, batch_size: int, smoke: bool, args: dict[str, Any]
) -> Task:
    from growprune.data.registry import check_kwargs
    from growprune.data.translation import load_bible_translation
    from growprune.tasks.translation import TranslationTask

    if recipe.data.random_crop or recipe.data.hflip:
        raise ValueError("random_crop and hflip are image augmentations; remove them for translation")
    check_kwargs("dataset", recipe.data.name, load_bible_translation, args)
    data = load_bible_translation(**args)
    if smoke:
        data.train = data.train.shortest(max(SMOKE_TRAIN_PAIRS, batch_size))
        data.valid = data.valid.shortest(SMOKE_SENTENCES)
        data.test = data.test.shortest(SMOKE_SENTENCES)
    data.train, data.valid, data.test = (s.to(device) for s in (data.train, data.valid, data.test))
    ev = recipe.evaluation
    return TranslationTask(
        data,
        batch_size=batch_size,
        eval_batch_size=recipe.training.eval_batch_size,
        seed=recipe.training.seed,
        label_smoothing=recipe.training.label_smoothing,
        beam_size=min(ev.beam_size, 2) if smoke else ev.beam_size,
        length_penalty=ev.length_penalty,
        epoch_sentences=ev.epoch_sentences,
        examples=ev.examples,
    )
