"""A small SSD-style single-shot detector (Liu et al., 2016), sized for CPU training here.

A VGG-style backbone (3x3 conv + BatchNorm + ReLU, stride-2 convs between stages) gives the first
feature map at stride 8; extra blocks (1x1 squeeze, 3x3 stride-2) halve it down to 1x1. Every
feature map has a default-box grid and its own 3x3 classification head (``C + 1`` scores per box,
index 0 the background) and box head (4 offsets per box). Every weight is a conv, so the default
target finder prunes backbone, extras and heads alike; recipes name them by pattern:
``backbone.stem.*``, ``backbone.stage1.*``, ``backbone.stage2.*``, ``extras.*``, ``heads.*``.

``forward`` returns ``(class logits (B, N, C + 1), box offsets (B, N, 4))`` in the order of
``default_boxes`` (N, 4; centre x, centre y, width, height as fractions of the image). Decoding
and NMS live in :mod:`growprune.tasks.detection.boxes`, the loss in :mod:`growprune.tasks.detection.multibox`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SSD", "default_boxes"]


def _conv(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def default_boxes(
    grid_sizes: list[int],
    min_scale: float = 0.1,
    max_scale: float = 0.9,
    aspect_ratios: tuple[float, ...] = (2.0,),
) -> torch.Tensor:
    """SSD's default boxes (cxcywh, fractions of the image) for square feature maps.

    Map ``k`` of ``m`` has scale ``s_k`` spaced linearly from ``min_scale`` to ``max_scale``; each
    cell centre gets a square box of side ``s_k``, one of side ``sqrt(s_k * s_{k+1})``, and for
    every ratio ``r`` the boxes ``s_k*sqrt(r) x s_k/sqrt(r)`` and their transpose.
    """
    m = len(grid_sizes)
    scales = [min_scale + (max_scale - min_scale) * k / max(m - 1, 1) for k in range(m)] + [1.0]
    boxes: list[list[float]] = []
    for k, size in enumerate(grid_sizes):
        s, s_next = scales[k], scales[k + 1]
        shapes = [(s, s), (math.sqrt(s * s_next),) * 2]
        for r in aspect_ratios:
            shapes += [(s * math.sqrt(r), s / math.sqrt(r)), (s / math.sqrt(r), s * math.sqrt(r))]
        for i in range(size):
            for j in range(size):
                cx, cy = (j + 0.5) / size, (i + 0.5) / size
                boxes.extend([cx, cy, w, h] for w, h in shapes)
    return torch.tensor(boxes, dtype=torch.float32)


class SSD(nn.Module):
    """Single-shot detector (``detector = True`` tells the engine it needs detection data).

    Args:
        num_classes: object categories (the background class is added).
        image_size: side of the square input; sets the feature-map sizes.
        widths: channels of the stem and the two backbone stages.
        extra_width: channels of the extra feature blocks.
        scales: number of feature maps (the stride-8 map plus ``scales - 1`` extra blocks).
        min_scale, max_scale: default-box scales of the first and last map.
    """

    detector = True

    def __init__(
        self,
        num_classes: int = 5,
        image_size: int = 128,
        widths: tuple[int, int, int] | list[int] = (32, 64, 128),
        extra_width: int = 128,
        scales: int = 5,
        min_scale: float = 0.1,
        max_scale: float = 0.9,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive channel counts, got {list(widths)}")
        if scales < 1:
            raise ValueError(f"scales must be >= 1, got {scales}")
        if not 0 < min_scale < max_scale <= 1:
            raise ValueError(f"need 0 < min_scale < max_scale <= 1, got {min_scale} and {max_scale}")
        w0, w1, w2 = widths
        self.num_classes = num_classes
        self.image_size = image_size
        self.backbone = nn.Module()
        self.backbone.stem = nn.Sequential(_conv(3, w0), _conv(w0, w0, stride=2))
        self.backbone.stage1 = nn.Sequential(_conv(w0, w1, stride=2), _conv(w1, w1))
        self.backbone.stage2 = nn.Sequential(_conv(w1, w2, stride=2), _conv(w2, w2))
        grids = [math.ceil(image_size / 8)]
        channels = [w2]
        blocks = []
        for _ in range(scales - 1):
            if grids[-1] == 1:
                raise ValueError(f"image_size {image_size} leaves no room for {scales} feature maps")
            blocks.append(
                nn.Sequential(
                    _conv(channels[-1], extra_width // 2, kernel=1),
                    _conv(extra_width // 2, extra_width, stride=2),
                )
            )
            grids.append(math.ceil(grids[-1] / 2))
            channels.append(extra_width)
        self.extras = nn.ModuleList(blocks)
        self.grid_sizes = grids
        self.boxes_per_cell = 4
        a = self.boxes_per_cell
        self.heads = nn.Module()
        self.heads.cls = nn.ModuleList(nn.Conv2d(c, a * (num_classes + 1), 3, padding=1) for c in channels)
        self.heads.box = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for c in channels)
        self.register_buffer("default_boxes", default_boxes(grids, min_scale, max_scale), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            # other sizes give other grids, which the default boxes would silently misdescribe
            raise ValueError(
                f"SSD built for {self.image_size}x{self.image_size} inputs got {x.shape[-2]}x{x.shape[-1]}; "
                "set data.args.image_size (the model takes it from the data), not model.args.image_size"
            )
        x = self.backbone.stage2(self.backbone.stage1(self.backbone.stem(x)))
        features = [x]
        for block in self.extras:
            features.append(block(features[-1]))
        logits, deltas = [], []
        for feature, cls, box in zip(features, self.heads.cls, self.heads.box):
            logits.append(cls(feature).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes + 1))
            deltas.append(box(feature).permute(0, 2, 3, 1).reshape(b, -1, 4))
        return torch.cat(logits, dim=1), torch.cat(deltas, dim=1)
