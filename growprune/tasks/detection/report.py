"""The detection part of a run: a figure of validation images with their boxes, and the report
section (COCO mAP per evaluation, the final numbers, the figure).

The detection task's registry entry names :func:`detection_lines` as its report section
(:mod:`growprune.tasks.registry`); it needs matplotlib, so it is imported only when drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from growprune.tasks.markdown import markdown_table

__all__ = ["FIGURE_FILE", "detection_figure", "detection_lines"]

FIGURE_FILE = "detections.png"
SHOWN_SCORE = 0.3  # predictions drawn in the figure (COCOeval scores all of them)


def detection_figure(
    path: Path,
    split: Any,
    detections: Sequence[dict[str, Any]],
    category_ids: Sequence[int],
    category_names: Sequence[str],
    count: int = 4,
) -> Path:
    """Draw the first ``count`` images of ``split`` (a DetectionSplit): true boxes green, predicted
    boxes (score >= 0.3) red with class and score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    names = dict(zip(category_ids, category_names))
    count = min(count, len(split))
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3.4), squeeze=False)
    size = int(split.images.shape[-1])
    truth: dict[int, list[dict[str, Any]]] = {}
    for ann in split.coco["annotations"]:
        truth.setdefault(int(ann["image_id"]), []).append(ann)
    found: dict[int, list[dict[str, Any]]] = {}
    for det in detections:
        found.setdefault(int(det["image_id"]), []).append(det)
    for ax, row in zip(axes[0], range(count)):
        image_id = split.image_ids[row]
        width, height = split.sizes[row]
        sx, sy = size / width, size / height
        ax.imshow(split.images[row].permute(1, 2, 0).cpu().numpy())
        for ann in truth.get(image_id, []):
            x, y, w, h = (float(v) for v in ann["bbox"])
            ax.add_patch(Rectangle((x * sx, y * sy), w * sx, h * sy, fill=False, color="lime", lw=1.5))
        for det in found.get(image_id, []):
            if det["score"] < SHOWN_SCORE:
                continue
            x, y, w, h = det["bbox"]
            ax.add_patch(Rectangle((x * sx, y * sy), w * sx, h * sy, fill=False, color="red", lw=1, ls="--"))
            label = f"{names.get(det['category_id'], det['category_id'])} {det['score']:.2f}"
            ax.text(x * sx, y * sy, label, color="white", fontsize=6, backgroundcolor="red", va="bottom")
        ax.set_title(f"image {image_id}", fontsize=8)
        ax.axis("off")
    fig.suptitle("validation images: true boxes (green), predictions with score >= 0.3 (red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def detection_lines(run_dir: Path, epochs: Sequence[Any], final: Any) -> list[str]:
    """Markdown lines of the section, or [] when the run is not a detection run."""
    rows = [e for e in epochs if "val_map" in e.scores]
    if not rows and (final is None or "val_map" not in final.scores):
        return []
    lines = ["## Detection (COCO mAP, pycocotools)", ""]
    if final is not None and "val_map" in final.scores:
        s = final.scores
        lines += [
            f"Final: mAP@[.5:.95] **{s['val_map']:.4f}**, mAP@.5 {s['val_map50']:.4f}, "
            f"mAP@.75 {s['val_map75']:.4f} on the validation split.",
            "",
        ]
    if rows:
        keys = ("val_map", "val_map50", "val_map75", "val_loss")
        cells = ([f"{e.epoch:.2f}", *(f"{e.scores.get(k, float('nan')):.4f}" for k in keys)] for e in rows)
        lines += markdown_table(("epoch", "mAP", "AP50", "AP75", "val loss"), "rrrrr", cells)
    if (Path(run_dir) / FIGURE_FILE).is_file():
        lines += [f"![validation detections](../{FIGURE_FILE})", ""]
    return lines
