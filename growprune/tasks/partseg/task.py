"""3-D part segmentation (ShapeNet-Part with PointNet++): the GaP paper's fourth task.

A batch is ``(points (B, N, C), part labels (B, N))``; the shape's category, which the model takes
as a one-hot input, is the category owning its (global) part ids, so the engine's two-tensor
batches carry it without a third tensor. Training minimises per-point cross-entropy over all 50
part logits; evaluation predicts within the category's parts and scores instance- and
class-average mIoU (:mod:`growprune.tasks.partseg.metric`). Each epoch scores the val split (which
picks ``best.pt``); the end of a run also scores the test split, the number a table reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from growprune.data.arguments import check_kwargs
from growprune.data.loader import TensorLoader
from growprune.tasks.base import Batch, Task, TaskRequest
from growprune.tasks.partseg.data import PartSegData, load_part_segmentation
from growprune.tasks.partseg.metric import miou, predict_parts, shape_ious
from growprune.tasks.partseg.shapenet_part import (
    CATEGORIES,
    NUM_CATEGORIES,
    NUM_PARTS,
    PartSegSplit,
    category_of_parts,
)

# Smoke runs read the first shapes of each split, sampled to few points.
SMOKE_PART_SHAPES = 8
SMOKE_PART_POINTS = 64

FIGURE_SHAPES = 4


class PartSegTask(Task):
    """Per-point cross-entropy; mIoU on held-out shapes."""

    primary_metric = "val_instance_miou"
    final_metric = "test_instance_miou"
    progress_text = (
        "val mIoU {val_instance_miou:.4f} (class {val_class_miou:.4f})  acc {val_acc:.4f}  "
        "loss {val_loss:.4f}"
    )
    final_text = "  | test mIoU {test_instance_miou:.4f} (class {test_class_miou:.4f})"

    def __init__(
        self,
        data: PartSegData,
        *,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        label_smoothing: float = 0.0,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.label_smoothing = label_smoothing
        self.part_category = category_of_parts().to(data.train.y.device)
        self.train_loader = self.worker_loader(seed)
        self.last_final: dict[str, Any] = {}

    @classmethod
    def from_request(cls, request: TaskRequest) -> PartSegTask:
        settings = request.data
        if settings.random_crop or settings.hflip:
            raise ValueError(
                "random_crop and hflip are image augmentations; part segmentation uses data.args.scale/jitter"
            )
        args = request.dataset_args("cache_dir", takes_root=True)
        check_kwargs("dataset", settings.name, load_part_segmentation, args)
        if request.smoke:
            args["points"] = min(int(args.get("points", SMOKE_PART_POINTS)), SMOKE_PART_POINTS)
            args["limit"] = SMOKE_PART_SHAPES
        data = load_part_segmentation(**args)
        sizes = request.loop_sizes()
        if request.smoke:  # a small folder of the user's may hold fewer training shapes than one batch
            sizes["batch_size"] = min(sizes["batch_size"], len(data.train))
        data.train, data.val, data.test = (s.to(request.device) for s in (data.train, data.val, data.test))
        return cls(data, **sizes)

    def worker_loader(self, seed: int) -> TensorLoader:
        train = self.data.train
        return TensorLoader(
            train.x,
            train.y,
            self.batch_size,
            shuffle=True,
            drop_last=True,
            augment=self.data.augment,
            seed=seed,
        )

    def model_defaults(self) -> dict[str, Any]:
        return {
            "num_parts": NUM_PARTS,
            "num_categories": NUM_CATEGORIES,
            "point_channels": int(self.data.train.x.shape[-1]),
        }

    def category(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) category of each shape, read off its first point's global part id."""
        return self.part_category[labels[:, 0]]

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        x, y = batch
        category = self.category(y)
        logits = model(x, category)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), label_smoothing=self.label_smoothing
        )
        correct = (predict_parts(logits.detach(), category) == y).sum()
        return loss, correct, y.numel()

    @torch.no_grad()
    def predict(self, model: nn.Module, split: PartSegSplit) -> tuple[torch.Tensor, float]:
        """(predicted part ids (S, N), mean per-point cross-entropy) of a whole split."""
        preds, loss_sum = [], 0.0
        for x, y in TensorLoader(split.x, split.y, self.eval_batch_size):
            logits = model(x, self.category(y))
            loss_sum += float(
                F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
            )
            preds.append(predict_parts(logits, self.category(y)))
        return torch.cat(preds), loss_sum / split.y.numel()

    def _split_scores(self, model: nn.Module, split: PartSegSplit, prefix: str) -> dict[str, float]:
        pred, loss = self.predict(model, split)
        ious = shape_ious(pred, split.y, split.category)
        scores = miou(ious, split.category)
        if prefix == "test":
            self.last_final = {"pred": pred.cpu(), "scores": scores, "ious": ious.cpu()}
        return {
            f"{prefix}_loss": loss,
            f"{prefix}_acc": float((pred == split.y).double().mean()),
            f"{prefix}_instance_miou": scores["instance"],
            f"{prefix}_class_miou": scores["class"],
        }

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            scores = self._split_scores(model, self.data.val, "val")
            if final:
                scores.update(self._split_scores(model, self.data.test, "test"))
        finally:
            model.train(was_training)
        return scores

    def write_artifacts(self, model: nn.Module, run_dir: Path) -> None:
        """``partseg.json`` (test mIoU per category, where the data came from) and
        ``partseg_examples.png`` (a few test shapes coloured by predicted and true part)."""
        final = self.last_final
        if not final:
            return
        scores = final["scores"]
        summary = {
            "data_root": str(self.data.root),
            "generated": self.data.generated,
            "test_shapes": len(self.data.test),
            "instance_miou": scores["instance"],
            "class_miou": scores["class"],
            "per_category_miou": {k[4:]: v for k, v in scores.items() if k.startswith("cat_")},
        }
        (Path(run_dir) / "partseg.json").write_text(json.dumps(summary, indent=1) + "\n")
        write_examples_figure(
            self.data.test, final["pred"], final["ious"], Path(run_dir) / "partseg_examples.png"
        )


def write_examples_figure(split: PartSegSplit, pred: torch.Tensor, ious: torch.Tensor, path: Path) -> None:
    """One shape per category (up to four): predicted parts above, true parts below.

    Skipped without matplotlib (an optional extra); the scores are in ``partseg.json`` either way.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    picks: list[int] = []
    for i, c in enumerate(split.category.tolist()):
        if c not in [int(split.category[j]) for j in picks]:
            picks.append(i)
        if len(picks) == FIGURE_SHAPES:
            break
    fig = plt.figure(figsize=(3 * len(picks), 6))
    colours = plt.get_cmap("tab10")
    for col, i in enumerate(picks):
        xyz = split.x[i, :, :3].cpu().numpy()
        first = CATEGORIES[int(split.category[i])].first_part
        for row, (labels, title) in enumerate(((pred[i], "predicted"), (split.y[i].cpu(), "true"))):
            ax = fig.add_subplot(2, len(picks), row * len(picks) + col + 1, projection="3d")
            # ShapeNet's up axis is y: plot it as the figure's vertical axis.
            ax.scatter(xyz[:, 0], xyz[:, 2], xyz[:, 1], c=colours((labels.numpy() - first) % 10), s=2)
            name = CATEGORIES[int(split.category[i])].name
            ax.set_title(
                f"{name}: {title}" + (f" (IoU {float(ious[i]):.2f})" if row == 0 else ""), fontsize=8
            )
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
