"""The loss terms of FCOS / BAFE-Net, as the reference computes them (bafenet-reference.md, section 1.2 and 2.4).

Each function returns the un-normalised terms; the head that owns the logits divides by its normaliser.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_LABEL = 255  # sky-mask value that carries no loss (padding)
IOU_EPS = 1e-6  # mmdet's bbox_overlaps union floor and IoULoss clamp


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float, gamma: float) -> Tensor:
    """Element-wise focal loss [P, C] of logits [P, C] against 0/1 targets [P, C]:
    -alpha_t (1 - p_t)^gamma log(p_t) with p_t the probability of the true value."""
    probabilities = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probabilities * targets + (1 - probabilities) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t) ** gamma * cross_entropy


def aligned_box_iou(boxes: Tensor, other: Tensor) -> Tensor:
    """IoU [P] of boxes [P, 4] with other [P, 4] row by row (x1, y1, x2, y2, no +1; union floored at 1e-6)."""
    top_left = torch.maximum(boxes[:, :2], other[:, :2])
    bottom_right = torch.minimum(boxes[:, 2:], other[:, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)
    other_area = (other[:, 2:] - other[:, :2]).prod(dim=1)
    return overlap / (area + other_area - overlap).clamp(min=IOU_EPS)


def iou_log_loss(boxes: Tensor, target_boxes: Tensor) -> Tensor:
    """-log(IoU) [P] per box pair, IoU clamped at >= 1e-6 (mmdet IoULoss, mode 'log': not GIoU)."""
    return -aligned_box_iou(boxes, target_boxes).clamp(min=IOU_EPS).log()


def sky_segmentation_loss(seg_logits: list[Tensor], sky_masks: Tensor) -> Tensor:
    """Binary sky loss over every pyramid level: seg_logits [N, 1, H_l, W_l] per level, sky_masks [N, H, W]
    (0 non-sky, 1 sky, 255 ignore) at input size.

    The mask is resized per level by nearest neighbour (the top-left pixel of each cell); BCE-with-logits with
    ignored pixels weighted 0, averaged over *all* elements of all levels and images (mmdet avg_non_ignore=False).
    """
    logits, labels = [], []
    for level_logits in seg_logits:
        level_labels = F.interpolate(sky_masks[:, None].float(), size=level_logits.shape[2:], mode="nearest")
        logits.append(level_logits.flatten())
        labels.append(level_labels.flatten())
    logits, labels = torch.cat(logits), torch.cat(labels)
    valid = labels != IGNORE_LABEL
    loss = F.binary_cross_entropy_with_logits(logits, torch.where(valid, labels, 0.0), reduction="none")
    return (loss * valid).mean()
