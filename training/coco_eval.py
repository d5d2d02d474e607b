"""COCO-style AP at one IoU threshold (AP50), the metric of the moving-target papers (bpfpn-notes.md: SSTNet, Tridos).

It differs from the VOC protocol of training/voc_eval.py in three ways, each as pycocotools' COCOeval does it:
boxes are continuous (area (x2 - x1) * (y2 - y1), no +1 pixel); each detection, best score first, takes the
unmatched gt box it overlaps most (a detection on an already matched box may still match another one, where VOC
counts it false); precision is read at 101 recall points and averaged. At most ``max_detections`` per image.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engines.postprocess import box_iou
from pipeline.types import Detections

RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True, slots=True)
class CocoResult:
    ap: float       # NaN without gt
    recall: float   # final recall over all kept detections
    num_gt: int
    num_detections: int


def coco_average_precision(detections: Sequence[Detections], gt_boxes: Sequence[np.ndarray],
                           iou_threshold: float = 0.5, max_detections: int = 100) -> CocoResult:
    """AP of ``detections`` (one per image) against ``gt_boxes`` (float [M, 4] x1, y1, x2, y2 per image)."""
    if len(detections) != len(gt_boxes):
        raise ValueError(f"need one detection set per image: {len(detections)} detection sets, {len(gt_boxes)} gt sets")
    scores, matched = [], []
    num_gt = 0
    for found, gt in zip(detections, gt_boxes):
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        image_scores = np.asarray(found.scores, np.float64).reshape(-1)
        order = np.argsort(-image_scores, kind="mergesort")[:max_detections]
        boxes = np.asarray(found.boxes, np.float64).reshape(-1, 4)[order]
        scores.append(image_scores[order])
        matched.append(_match_greedy(boxes, gt, iou_threshold))
        num_gt += len(gt)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    if num_gt == 0:
        return CocoResult(float("nan"), float("nan"), 0, len(all_scores))
    order = np.argsort(-all_scores, kind="mergesort")
    true_positive = np.cumsum(np.concatenate(matched)[order])
    recalls = true_positive / num_gt
    precisions = true_positive / np.maximum(np.arange(1, len(order) + 1), np.finfo(np.float64).eps)
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]  # the precision envelope
    at = np.searchsorted(recalls, RECALL_POINTS, side="left")
    sampled = np.where(at < len(precisions), precisions[np.minimum(at, len(precisions) - 1)], 0.0)
    return CocoResult(float(sampled.mean()), float(recalls[-1]) if len(recalls) else 0.0, num_gt, len(all_scores))


def _match_greedy(boxes: np.ndarray, gt: np.ndarray, iou_threshold: float) -> np.ndarray:
    """True-positive flags of ``boxes`` (best score first), each taking its best unmatched ``gt`` box."""
    taken = np.zeros(len(gt), bool)
    hits = np.zeros(len(boxes), bool)
    for row, box in enumerate(boxes):
        candidates = np.where(taken, -1.0, box_iou(box, gt))
        if candidates.size and candidates.max() >= min(iou_threshold, 1 - 1e-10):
            best = int(candidates.argmax())
            taken[best] = hits[row] = True
    return hits
