"""Object detection with an SSD-style model on COCO-format data, scored by COCO mAP.

The GaP paper's fourth task (SSD on COCO-2017). Training batches are whole-tensor slices of the
in-memory split (:class:`DetectionLoader`: normalisation and a seeded horizontal flip of images
and boxes); the loss is :class:`~growprune.tasks.detection.multibox.MultiboxLoss`. Every evaluation runs
the model over the whole validation split, decodes and suppresses its boxes
(:func:`~growprune.tasks.detection.boxes.detect`), maps them back to each image's pixels and scores
them with pycocotools' COCOeval against the annotation file: ``val_map`` (AP@[.5:.95]) picks
``best.pt`` and reports the run, with ``val_map50`` and ``val_map75`` beside it. COCO-2017 has
no public test annotations, so, as in the SSD paper, the validation split is the reported one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from growprune.data.arguments import check_kwargs
from growprune.data.loader import TensorLoader
from growprune.seeding import stream_seed
from growprune.tasks.base import Batch, Task, TaskRequest
from growprune.tasks.detection.boxes import detect
from growprune.tasks.detection.coco import CocoDetectionData, DetectionSplit, find_root, load_coco_detection
from growprune.tasks.detection.coco_map import coco_map
from growprune.tasks.detection.multibox import MultiboxLoss
from growprune.tasks.detection.settings import DetectionEvaluation

# Smoke runs keep the schedule but train on one batch of 8 images per epoch and score 4
# validation images: an SSD step costs ~25 ms per image on one core.
SMOKE_DETECTION_BATCH = 8
SMOKE_VAL_IMAGES = 4

__all__ = ["DETECTIONS_FILE", "FIGURE_FILE", "DetectionLoader", "DetectionTask"]

# ImageNet's channel statistics, as SSD's VGG backbone expects (0-255 scale).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
DETECTIONS_FILE = "detections.json"
FIGURE_FILE = "detections.png"
MAX_FIGURE_IMAGES = 4  # validation images drawn in detections.png, whatever evaluation.examples asks
_STREAM_FLIP = 2  # after the loader's shuffle (0) and augmentation (1) streams


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, per-channel standardised."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() - mean) / std


def flip_targets(targets: torch.Tensor) -> torch.Tensor:
    """Padded (…, M, 5) targets of left-right flipped images (padding rows unchanged)."""
    flipped = targets.clone()
    real = targets[..., 0] >= 0
    flipped[..., 1] = torch.where(real, 1.0 - targets[..., 3], targets[..., 1])
    flipped[..., 3] = torch.where(real, 1.0 - targets[..., 1], targets[..., 3])
    return flipped


class DetectionLoader(TensorLoader):
    """Batches ``(normalised images, padded targets)``; with ``hflip`` each image and its boxes
    flip with probability 1/2, drawn from ``(seed, epoch, batch)`` so a resumed run repeats them."""

    def __init__(self, split: DetectionSplit, batch_size: int, *, hflip: bool = False, **kwargs: Any) -> None:
        super().__init__(split.images, split.targets, batch_size, **kwargs)
        self.hflip = hflip

    def _make_batch(self, idx: torch.Tensor, epoch: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = self.x[idx], self.y[idx]
        if self.hflip:
            generator = torch.Generator().manual_seed(stream_seed(self.seed, _STREAM_FLIP, epoch, b))
            flip = torch.rand(len(idx), generator=generator) < 0.5
            flip = flip.to(images.device)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            targets = torch.where(flip[:, None, None], flip_targets(targets), targets)
        return normalise(images), targets


def _defaults(model: nn.Module) -> torch.Tensor:
    inner = getattr(model, "module", model)  # DistributedDataParallel and similar wrappers
    boxes = getattr(inner, "default_boxes", None)
    if not isinstance(boxes, torch.Tensor):
        raise ValueError(f"{type(inner).__name__} has no default_boxes; detection needs model.name: ssd")
    return boxes


class DetectionTask(Task):
    """SSD loss on the training split; COCO mAP of the validation split."""

    primary_metric = "val_map"
    final_metric = "val_map"
    progress_text = "val mAP {val_map:.4f}  AP50 {val_map50:.4f}  AP75 {val_map75:.4f}  loss {val_loss:.4f}"

    def __init__(
        self,
        data: CocoDetectionData,
        *,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        hflip: bool = True,
        evaluation: DetectionEvaluation | None = None,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.hflip = hflip
        self.evaluation = evaluation or DetectionEvaluation()
        self.criterion = MultiboxLoss()
        self.train_loader = self.worker_loader(seed)
        self.last_detections: list[dict[str, Any]] = []

    @classmethod
    def from_request(cls, request: TaskRequest) -> DetectionTask:
        from growprune.tasks.detection.shapes import generated_root

        settings = request.data
        if settings.random_crop:
            raise ValueError(
                "random_crop does not move the boxes; remove it for detection (hflip is supported)"
            )
        args: dict[str, Any] = dict(settings.args)
        generator_keys = ("n_train", "n_val", "generator_seed", "cache_dir")
        generator = {key: args.pop(key) for key in generator_keys if key in args}
        check_kwargs("dataset", settings.name, load_coco_detection, {"root": None, **args})
        root = find_root(args.pop("root", None) or settings.root or settings.data_dir)
        if root is None:
            if settings.name == "coco":
                raise ValueError(
                    "data.name coco needs the dataset folder: set data.root (or $GROWPRUNE_COCO) to a "
                    "folder with annotations/instances_train2017.json, annotations/instances_val2017.json, "
                    "train2017/ and val2017/ (or use data.name coco_shapes for the generated set)"
                )
            if "generator_seed" in generator:
                generator["seed"] = generator.pop("generator_seed")
            check_kwargs("dataset", settings.name, generated_root, generator)
            root = generated_root(**generator)
        elif generator:
            raise ValueError(
                f"{', '.join(sorted(generator))} shape the generated set; data.root {root} is read as it is"
            )
        batch_size = request.batch_size
        if request.smoke:
            batch_size = min(batch_size, SMOKE_DETECTION_BATCH)
            args["train_limit"] = batch_size
            args["val_limit"] = SMOKE_VAL_IMAGES
        data = load_coco_detection(root, **args)
        if request.smoke:  # a folder smaller than one smoke batch still runs
            batch_size = min(batch_size, len(data.train))
        data.train.to(request.device)
        data.val.to(request.device)
        return cls(
            data,
            batch_size=batch_size,
            eval_batch_size=request.eval_batch_size,
            seed=request.seed,
            hflip=settings.hflip,
            evaluation=request.evaluation,
        )

    def worker_loader(self, seed: int) -> DetectionLoader:
        return DetectionLoader(
            self.data.train, self.batch_size, hflip=self.hflip, shuffle=True, drop_last=True, seed=seed
        )

    def model_defaults(self) -> dict[str, Any]:
        return {"num_classes": self.data.num_classes, "image_size": int(self.data.train.images.shape[-1])}

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        images, targets = batch
        logits, deltas = model(images)
        return self.criterion(logits, deltas, targets, _defaults(model))

    @torch.no_grad()
    def predict(self, model: nn.Module, split: DetectionSplit) -> tuple[list[dict[str, Any]], float]:
        """COCO result entries (pixels of the original images) for ``split``, and its mean loss."""
        detections: list[dict[str, Any]] = []
        loss_sum, batches = 0.0, 0
        defaults = _defaults(model)
        for start in range(0, len(split), self.eval_batch_size):
            stop = min(start + self.eval_batch_size, len(split))
            logits, deltas = model(normalise(split.images[start:stop]))
            loss_sum += float(self.criterion(logits, deltas, split.targets[start:stop], defaults)[0])
            batches += 1
            found = detect(
                logits,
                deltas,
                defaults,
                score_threshold=self.evaluation.score_threshold,
                iou_threshold=self.evaluation.nms_iou,
                max_detections=self.evaluation.max_detections,
            )
            for row, (boxes, scores, labels) in zip(range(start, stop), found):
                width, height = split.sizes[row]
                pixels = (boxes * torch.tensor([width, height, width, height], device=boxes.device)).tolist()
                for (x1, y1, x2, y2), score, label in zip(pixels, scores.tolist(), labels.tolist()):
                    detections.append(
                        {
                            "image_id": split.image_ids[row],
                            "category_id": self.data.category_ids[label],
                            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                            "score": round(score, 5),
                        }
                    )
        return detections, loss_sum / max(batches, 1)

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            detections, loss = self.predict(model, self.data.val)
        finally:
            model.train(was_training)
        self.last_detections = detections
        scores = coco_map(self.data.val.coco, detections)
        return {
            "val_map": scores["map"],
            "val_map50": scores["map50"],
            "val_map75": scores["map75"],
            "val_loss": loss,
        }

    def write_artifacts(self, model: nn.Module, run_dir: Any) -> None:
        """``detections.json`` (every validation detection, COCO result format, for re-scoring)
        and ``detections.png`` (a few validation images with true and predicted boxes)."""
        run_dir = Path(run_dir)
        (run_dir / DETECTIONS_FILE).write_text(json.dumps(self.last_detections))
        if self.evaluation.examples > 0:
            from growprune.tasks.detection.report import detection_figure

            detection_figure(
                run_dir / FIGURE_FILE,
                self.data.val,
                self.last_detections,
                self.data.category_ids,
                self.data.category_names,
                count=min(self.evaluation.examples, MAX_FIGURE_IMAGES),
            )
