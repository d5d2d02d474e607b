"""Host post-processing of model outputs: score threshold, non-maximum suppression, most detections per frame.

Shared by every model engine (ONNX Runtime now, TensorRT and torch later): the engine contract leaves NMS out of
the graph, so all engines give the same detections for the same raw outputs.
"""
from __future__ import annotations

import numpy as np

from pipeline.types import Detections


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with boxes [M, 4] (x1, y1, x2, y2, continuous pixel coordinates, no +1)."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    intersection = width * height
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_kept: int | None = None) -> np.ndarray:
    """Greedy NMS: indices of the kept boxes, best score first (ties: lower index first).

    A box is dropped when its IoU with a kept, higher-ranked box exceeds ``iou_threshold``. Each round keeps the
    best remaining box and drops its overlaps in one vectorised step, so the cost is rounds x remaining boxes
    with at most ``max_kept`` rounds.
    """
    remaining = np.argsort(-scores, kind="stable")
    kept = []
    while len(remaining) and (max_kept is None or len(kept) < max_kept):
        best, remaining = remaining[0], remaining[1:]
        kept.append(best)
        remaining = remaining[box_iou(boxes[best], boxes[remaining]) <= iou_threshold]
    return np.asarray(kept, dtype=np.int64)


def select_detections(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou_threshold: float,
                      max_detections: int) -> Detections:
    """Detections of one frame from raw top-K outputs boxes [K, 4] and scores [K]: scores >= threshold, then NMS,
    then the ``max_detections`` best."""
    candidates = np.flatnonzero(scores >= score_threshold)
    kept = candidates[nms(boxes[candidates], scores[candidates], iou_threshold, max_detections)]
    return Detections(boxes[kept].astype(np.float32), scores[kept].astype(np.float32))
