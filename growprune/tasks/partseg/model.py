"""PointNet++ part segmentation (single-scale grouping, Qi et al. 2017) in plain torch.

No compiled extension: farthest-point sampling, ball query, grouping and three-nearest-neighbour
interpolation are written with torch tensor ops (FPS is a loop over the sampled centroids, each
step vectorised over the batch), so the model runs anywhere torch runs. Every shared MLP is a
stack of 1x1 convolutions (``Conv2d`` over the grouped neighbourhoods of a set-abstraction stage,
``Conv1d`` over the points of a feature-propagation stage), so the default target finder prunes
them like any other conv; the module names (``sa1``-``sa3``, ``fp3``-``fp1``, ``head``) are what
recipe partitions match.

Layout of the reference SSG part-segmentation network (``width`` scales every channel count):

    SA1: 512 centroids, radius 0.2, 32 neighbours, MLP 64-64-128
    SA2: 128 centroids, radius 0.4, 64 neighbours, MLP 128-128-256
    SA3: all points grouped, MLP 256-512-1024
    FP3: 256-256   FP2: 256-128   FP1 (with the category one-hot, xyz and extra point features): 128-128-128
    head: conv 128 + BN + ReLU + dropout 0.5, conv -> part logits
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PointNet2PartSeg", "ball_query", "farthest_point_sample", "gather_points", "three_nn_interpolate"]


def square_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, S, N) squared distances between points a (B, S, 3) and b (B, N, 3)."""
    return (a.unsqueeze(2) - b.unsqueeze(1)).pow(2).sum(-1)


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points (B, N, C) indexed by idx (B, ...) -> (B, ..., C)."""
    b = points.shape[0]
    batch = torch.arange(b, device=points.device).view(b, *([1] * (idx.dim() - 1)))
    return points[batch, idx]


@torch.no_grad()
def farthest_point_sample(xyz: torch.Tensor, count: int) -> torch.Tensor:
    """(B, count) indices of iteratively farthest points, starting from point 0 of each cloud.

    Starting from a fixed point (the reference picks a random one) keeps a forward pass a pure
    function of its input, which the resume and evaluation guarantees rely on.
    """
    b, n, _ = xyz.shape
    idx = torch.zeros(b, count, dtype=torch.long, device=xyz.device)
    nearest = torch.full((b, n), float("inf"), device=xyz.device, dtype=xyz.dtype)
    farthest = torch.zeros(b, dtype=torch.long, device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for i in range(count):
        idx[:, i] = farthest
        centre = xyz[rows, farthest].unsqueeze(1)
        nearest = torch.minimum(nearest, (xyz - centre).pow(2).sum(-1))
        farthest = nearest.argmax(-1)
    return idx


@torch.no_grad()
def ball_query(xyz: torch.Tensor, centres: torch.Tensor, radius: float, count: int) -> torch.Tensor:
    """(B, S, count) indices of up to ``count`` points within ``radius`` of each centre, lowest
    index first; slots left over repeat the first neighbour found (as the reference CUDA op does).
    Every centre is one of ``xyz``, so it has at least itself as a neighbour."""
    b, n, _ = xyz.shape
    d = square_distance(centres, xyz)
    idx = torch.arange(n, device=xyz.device).expand(b, centres.shape[1], n).clone()
    idx[d > radius**2] = n
    idx = idx.sort(dim=-1).values[..., : min(count, n)]
    return torch.where(idx == n, idx[..., :1].expand_as(idx), idx)


def three_nn_interpolate(target: torch.Tensor, source: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Features (B, S, C) at ``source`` points interpolated onto ``target`` points (B, N, 3) by
    inverse squared distance over the three nearest source points -> (B, N, C)."""
    if source.shape[1] == 1:
        return feats.expand(-1, target.shape[1], -1)
    d = square_distance(target, source)
    k = min(3, source.shape[1])
    dist, idx = d.topk(k, dim=-1, largest=False)
    weight = 1.0 / (dist + 1e-8)
    weight = weight / weight.sum(-1, keepdim=True)
    return (gather_points(feats, idx) * weight.unsqueeze(-1)).sum(2)


class ConvBNReLU(nn.Module):
    """One layer of a shared MLP: a 1x1 convolution (no bias: BatchNorm follows), BN, ReLU."""

    def __init__(self, cin: int, cout: int, dims: int) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.conv = conv(cin, cout, kernel_size=1, bias=False)
        self.bn = norm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _mlp(cin: int, widths: Sequence[int], dims: int) -> nn.Sequential:
    layers = []
    for cout in widths:
        layers.append(ConvBNReLU(cin, cout, dims))
        cin = cout
    return nn.Sequential(*layers)


class SetAbstraction(nn.Module):
    """Sample centroids (FPS), group neighbours (ball query, or all points), run the shared MLP
    on (relative xyz, features) of each neighbour, max-pool over the neighbourhood."""

    def __init__(
        self, centroids: int | None, radius: float, neighbours: int, cin: int, widths: Sequence[int]
    ):
        super().__init__()
        self.centroids, self.radius, self.neighbours = centroids, radius, neighbours
        self.mlp = _mlp(cin + 3, widths, dims=2)

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.centroids is None:  # group all: one centroid at the origin
            centres = xyz.new_zeros(xyz.shape[0], 1, 3)
            grouped = xyz.unsqueeze(1)
            if feats is not None:
                grouped = torch.cat([grouped, feats.unsqueeze(1)], dim=-1)
        else:
            centres = gather_points(xyz, farthest_point_sample(xyz, min(self.centroids, xyz.shape[1])))
            idx = ball_query(xyz, centres, self.radius, self.neighbours)
            grouped = gather_points(xyz, idx) - centres.unsqueeze(2)
            if feats is not None:
                grouped = torch.cat([grouped, gather_points(feats, idx)], dim=-1)
        out = self.mlp(grouped.permute(0, 3, 1, 2))  # (B, C, S, K)
        return centres, out.max(dim=-1).values.transpose(1, 2)


class FeaturePropagation(nn.Module):
    """Interpolate coarse features onto the finer points, concatenate the skip features, shared MLP."""

    def __init__(self, cin: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.mlp = _mlp(cin, widths, dims=1)

    def forward(
        self, xyz: torch.Tensor, coarse_xyz: torch.Tensor, skip: torch.Tensor | None, coarse: torch.Tensor
    ) -> torch.Tensor:
        x = three_nn_interpolate(xyz, coarse_xyz, coarse)
        if skip is not None:
            x = torch.cat([skip, x], dim=-1)
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)


class PointNet2PartSeg(nn.Module):
    """PointNet++ SSG part segmentation: (points, category) -> per-point part logits.

    Args:
        num_parts: part logits per point (50 for ShapeNet-Part's global ids).
        num_categories: size of the category one-hot (16).
        point_channels: channels per input point: 3 (xyz) or 6 (xyz + normals).
        width: multiplier on every channel count of the reference layout (1.0).
        centroids: centroids of SA1 and SA2 (capped at the points available).
        radii: ball-query radii of SA1 and SA2 (on unit-sphere-normalised shapes).
        neighbours: neighbours grouped per centroid in SA1 and SA2.
        dropout: before the last layer.

    ``forward(x, category)``: x (B, N, point_channels), category (B,) int64 -> (B, N, num_parts).
    """

    def __init__(
        self,
        num_parts: int = 50,
        num_categories: int = 16,
        point_channels: int = 6,
        width: float = 1.0,
        centroids: Sequence[int] = (512, 128),
        radii: Sequence[float] = (0.2, 0.4),
        neighbours: Sequence[int] = (32, 64),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if point_channels < 3:
            raise ValueError(f"point_channels must be >= 3 (xyz first), got {point_channels}")
        for name, pair in (("centroids", centroids), ("radii", radii), ("neighbours", neighbours)):
            if len(pair) != 2 or min(pair) <= 0:
                raise ValueError(f"{name} must be two positive numbers (SA1, SA2), got {list(pair)}")
        if width <= 0 or num_parts < 1 or num_categories < 1 or not 0 <= dropout < 1:
            raise ValueError("width, num_parts and num_categories must be positive and dropout in [0, 1)")

        def w(c: int) -> int:
            return max(1, round(c * width))

        extra = point_channels - 3
        self.num_categories = num_categories
        self.sa1 = SetAbstraction(
            int(centroids[0]), float(radii[0]), int(neighbours[0]), extra, [w(64), w(64), w(128)]
        )
        self.sa2 = SetAbstraction(
            int(centroids[1]), float(radii[1]), int(neighbours[1]), w(128), [w(128), w(128), w(256)]
        )
        self.sa3 = SetAbstraction(None, 0.0, 0, w(256), [w(256), w(512), w(1024)])
        self.fp3 = FeaturePropagation(w(1024) + w(256), [w(256), w(256)])
        self.fp2 = FeaturePropagation(w(256) + w(128), [w(256), w(128)])
        self.fp1 = FeaturePropagation(w(128) + num_categories + point_channels, [w(128), w(128), w(128)])
        self.head = nn.Sequential(
            ConvBNReLU(w(128), w(128), dims=1), nn.Dropout(dropout), nn.Conv1d(w(128), num_parts, 1)
        )

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        xyz = x[..., :3].contiguous()
        extra = x[..., 3:] if x.shape[-1] > 3 else None
        xyz1, f1 = self.sa1(xyz, extra)
        xyz2, f2 = self.sa2(xyz1, f1)
        xyz3, f3 = self.sa3(xyz2, f2)
        f2 = self.fp3(xyz2, xyz3, f2, f3)
        f1 = self.fp2(xyz1, xyz2, f1, f2)
        onehot = F.one_hot(category, self.num_categories).to(x.dtype)
        skip = torch.cat([onehot.unsqueeze(1).expand(-1, x.shape[1], -1), x], dim=-1)
        f0 = self.fp1(xyz, xyz1, skip, f1)
        return self.head(f0.transpose(1, 2)).transpose(1, 2)
