"""Host post-processing of model outputs: score threshold, non-maximum suppression, most detections per frame.

Shared by every model engine (ONNX Runtime, TensorRT, torch): the engine contract leaves NMS out of the graph, so
all engines give the same detections for the same raw outputs.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from pipeline.errors import UserError
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


def check_raw_outputs(boxes: np.ndarray, scores: np.ndarray, batch: int, model: str) -> None:
    """Raise UserError unless boxes [batch, K, 4] and scores [batch, K] are finite (a broken model or export)."""
    if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[2] != 4 or scores.shape != boxes.shape[:2]:
        raise UserError(f"detector weights {model}: for a batch of {batch} the model returned boxes "
                        f"{list(boxes.shape)} and scores {list(scores.shape)}; expected [N, K, 4] and [N, K] (the "
                        "engine contract, engines/onnxruntime_backend.py)")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise UserError(f"detector weights {model}: the model returned NaN or infinite boxes or scores; the model or "
                        "its export is broken (check it with the trainer's evaluate command)")


def detect_in_chunks(images: Sequence[np.ndarray], chunk: int, padded_batch: int | None, config,
                     infer: Callable[[list[np.ndarray], int], tuple[np.ndarray, np.ndarray, np.ndarray]]
                     ) -> list[Detections]:
    """The model engines' ``detect``: ``images`` (frames [H, W], or a multi-frame model's stacks [F, H, W] from
    engines/frames.py) in chunks of ``chunk``, each run by ``infer(items, padded_batch or len(items))`` -> raw
    boxes, scores (checked by the engine) and per-item scales, then turned into each key frame's detections with
    ``config``'s score threshold, NMS IoU and detection limit."""
    results = []
    for start in range(0, len(images), chunk):
        items = list(images[start:start + chunk])
        boxes, scores, scales = infer(items, padded_batch or len(items))
        results += [frame_detections(boxes[i], scores[i], scales[i], item.shape[-2:], config.score_threshold,
                                     config.nms_iou, config.max_detections) for i, item in enumerate(items)]
    return results


def frame_detections(boxes: np.ndarray, scores: np.ndarray, scale: np.ndarray, shape: tuple[int, int],
                     score_threshold: float, iou_threshold: float, max_detections: int) -> Detections:
    """One frame's detections from its raw outputs boxes [K, 4] (network-input pixels) and scores [K]: boxes scaled
    by ``scale`` (x, y) to the frame's pixels, those centred in the padding dropped, the rest clipped to the frame
    (``shape`` height, width), then select_detections."""
    height, width = shape
    boxes = boxes.astype(np.float64) * np.tile(scale, 2)
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    inside = (centres[:, 0] >= 0) & (centres[:, 0] < width) & (centres[:, 1] >= 0) & (centres[:, 1] < height)
    boxes = np.clip(boxes[inside], 0, [width, height, width, height])
    return select_detections(boxes, scores[inside].astype(np.float64), score_threshold, iou_threshold, max_detections)
