"""Image (or feature-vector) classification: Fashion-MNIST and the synthetic sets."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from growprune.data.dataset import InMemoryDataset
from growprune.data.loader import Augment, TensorLoader
from growprune.tasks.base import Batch, Task, TaskRequest
from growprune.tasks.classification.datasets import build_datasets

SMOKE_TRAIN_ITEMS = 256
SMOKE_TEST_ITEMS = 256


class ClassificationTask(Task):
    """Cross-entropy on labelled tensors; scored by top-1 accuracy on the test split."""

    primary_metric = "test_acc"
    final_metric = "test_acc"
    progress_text = "test acc {test_acc:.4f}  loss {test_loss:.4f}"

    def __init__(
        self,
        train: InMemoryDataset,
        test: InMemoryDataset,
        *,
        batch_size: int,
        eval_batch_size: int,
        augment: Augment,
        seed: int,
        label_smoothing: float = 0.0,
    ) -> None:
        self.train_set, self.test_set = train, test
        self.augment = augment
        self.seed = seed
        self.train_loader = self._loader(seed, batch_size)
        self.test_loader = TensorLoader.from_dataset(test, eval_batch_size)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.num_classes = int(max(train.y.max(), test.y.max()).item()) + 1

    @classmethod
    def from_request(cls, request: TaskRequest) -> ClassificationTask:
        data = request.data
        args = request.dataset_args("data_dir")
        subsets = (
            {"train_subset": SMOKE_TRAIN_ITEMS, "test_subset": SMOKE_TEST_ITEMS} if request.smoke else {}
        )
        train, test = build_datasets(data.name, **subsets, **args)
        train, test = train.to(request.device), test.to(request.device)
        augment = Augment(
            crop_padding=data.crop_padding if data.random_crop else 0,
            hflip=data.hflip,
            fill=float(getattr(train, "pad_value", 0.0)),
        )
        return cls(train, test, augment=augment, **request.loop_sizes())

    def _loader(self, seed: int, batch_size: int) -> TensorLoader:
        return TensorLoader.from_dataset(
            self.train_set, batch_size, shuffle=True, drop_last=True, augment=self.augment, seed=seed
        )

    def model_defaults(self) -> dict[str, Any]:
        shape = self.train_set.input_shape
        return {"in_features": math.prod(shape), "in_channels": shape[0], "num_classes": self.num_classes}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = batch
        logits = model(x)
        loss = self.loss_fn(logits, y)
        return loss, (logits.detach().argmax(1) == y).sum(), len(y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        del final  # the per-epoch evaluation is already the full one
        was_training = model.training
        model.eval()
        loss_sum, correct, count = 0.0, 0, 0
        for x, y in self.test_loader:
            logits = model(x)
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
        model.train(was_training)
        return {"test_loss": loss_sum / count, "test_acc": correct / count}

    def collapsed(self, scores: dict[str, float], peak: float) -> str | None:
        """Accuracy back at chance after the run had been well above it.

        Chance is what predicting the commonest test class scores. "At chance" allows three
        binomial standard errors of noise on the test set's size; "well above" needs the run to
        have reached a quarter of the way from chance to perfect, so a model that never learned
        (a short smoke run) is not flagged. The engine warns on it and trains on (see
        :meth:`Task.collapsed`).
        """
        counts = torch.bincount(self.test_set.y.long().flatten().cpu(), minlength=self.num_classes)
        total = int(counts.sum())
        chance = int(counts.max()) / total
        noise = 3 * math.sqrt(chance * (1 - chance) / total)
        accuracy = scores["test_acc"]
        if accuracy <= chance + noise and peak >= chance + max(2 * noise, 0.25 * (1 - chance)):
            return (
                f"test accuracy fell to {accuracy:.4f}, chance level ({chance:.4f} for the commonest of "
                f"{self.num_classes} classes), after reaching {peak:.4f}"
            )
        return None

    def worker_loader(self, seed: int) -> TensorLoader:
        return self._loader(seed, self.train_loader.batch_size)
