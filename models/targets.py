"""FCOS target assignment as the reference configures it (mmdet FCOSHead, center_sampling=False).

Boxes are x1, y1, x2, y2 in input pixels with no +1 (the dataset already applied the VOC minus-one); a location
is the point ((j + 0.5) s, (i + 0.5) s) of feature cell (i, j) at stride s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ImageTargets:
    """Ground truth of one training image in input pixels: boxes float32 [M, 4] (x1, y1, x2, y2), labels int64
    [M] in 0..num_classes-1, and for the BAFE head the sky mask uint8 [H, W] (0 non-sky, 1 sky, 255 ignore)."""

    boxes: Tensor
    labels: Tensor
    sky_mask: Tensor | None = None


def level_points(height: int, width: int, stride: int, device: torch.device | None = None) -> Tensor:
    """Locations [height * width, 2] (x, y) of one level's cells, row-major like a flattened feature map."""
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)


def box_distances(points: Tensor, boxes: Tensor) -> Tensor:
    """Distances [P, M, 4] (left, top, right, bottom) from points [P, 2] to the sides of boxes [M, 4]."""
    x, y = points[:, 0, None], points[:, 1, None]
    return torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=-1)


def boxes_from_distances(points: Tensor, distances: Tensor) -> Tensor:
    """Boxes [..., 4] (x1, y1, x2, y2) from points [..., 2] and distances [..., 4] (l, t, r, b), no +1."""
    return torch.cat([points - distances[..., :2], points + distances[..., 2:]], dim=-1)


def assign_fcos_targets(points: Tensor, regress_ranges: Tensor, boxes: Tensor, labels: Tensor, num_classes: int,
                        min_size: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Per location of one image: the class label [P] (``num_classes`` = background), the distances [P, 4]
    (l, t, r, b) to its box (zeros for background) and the distances to the box it was assigned by (for centerness).

    points [P, 2] of all levels; regress_ranges [P, 2] the (low, high) of each point's level; boxes [M, 4] and
    labels [M] the image's ground truth. A location is positive for a box when it lies strictly inside it
    (min distance > 0) and its largest distance is within its level's range (both ends inclusive); of several
    such boxes the smallest area wins. That is the reference; ``min_size`` > 0 is ours: for assignment only, a
    box is grown about its centre to at least ``min_size`` px a side, so a 3 px target gets a location on a
    stride-4 grid (the reference leaves ~40% of DenseSIRST boxes with none). The box distances then stay those of
    the true box, clipped at 0 for a location just outside it; the assignment distances drive centerness.
    """
    num_points = points.shape[0]
    background = torch.full((num_points,), num_classes, dtype=torch.long, device=points.device)
    if boxes.shape[0] == 0:
        zeros = points.new_zeros((num_points, 4))
        return background, zeros, zeros
    assignment_boxes = grow_boxes(boxes, min_size) if min_size > 0 else boxes
    distances = box_distances(points, assignment_boxes)
    inside = distances.min(dim=-1).values > 0
    largest = distances.max(dim=-1).values
    in_range = (largest >= regress_ranges[:, :1]) & (largest <= regress_ranges[:, 1:])
    areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).expand(num_points, -1)
    areas = torch.where(inside & in_range, areas, math.inf)
    smallest_area, box_index = areas.min(dim=1)
    positive = torch.isfinite(smallest_area)
    assigned = torch.where(positive, labels[box_index], background)
    rows = torch.arange(num_points, device=points.device)
    assignment_distances = torch.where(positive[:, None], distances[rows, box_index], 0.0)
    if min_size <= 0:
        return assigned, assignment_distances, assignment_distances
    box_goal = box_distances(points, boxes)[rows, box_index].clamp(min=0)
    return assigned, torch.where(positive[:, None], box_goal, 0.0), assignment_distances


def grow_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Boxes [M, 4] widened and heightened about their centres to at least ``min_size`` px (larger ones unchanged)."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = ((boxes[:, 2:] - boxes[:, :2]).clamp(min=min_size)) / 2
    return torch.cat([centres - half, centres + half], dim=1)


def centerness_targets(distances: Tensor) -> Tensor:
    """sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) [P] for distances [P, 4] (l, t, r, b) of positives."""
    left_right, top_bottom = distances[:, [0, 2]], distances[:, [1, 3]]
    ratio = (left_right.min(dim=1).values / left_right.max(dim=1).values
             * top_bottom.min(dim=1).values / top_bottom.max(dim=1).values)
    return ratio.sqrt()
