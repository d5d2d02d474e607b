"""Export a trained detector to ONNX (models/export.py) and check the file in ONNX Runtime against torch.

The check feeds both the same network input, prepared by the ONNX Runtime engine itself from one grey frame, so
it covers the graph and the metadata-driven pre-processing the pipeline will use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.onnxruntime_backend import OnnxRuntimeDetector
from models.detector import Detector
from models.export import ExportableDetector, export_onnx


@dataclass(frozen=True)
class ExportCheck:
    """How far ONNX Runtime's candidates are from torch's, without relying on their order: near-tied scores may
    rank differently in the two runtimes, so candidates are not compared slot by slot. Scores: the largest
    difference between the two score lists, each sorted. Boxes: for each torch candidate scoring > 0, the
    distance (largest coordinate difference, px) to the nearest ONNX Runtime candidate scoring > 0; the largest
    of those. Zero-score slots hold arbitrary locations and are left out."""

    max_score_difference: float
    max_box_difference: float
    scored_candidates: int


def export_and_check(detector: Detector, path: Path, input_size: tuple[int, int] | None,
                     frame: np.ndarray) -> ExportCheck:
    """Write ``path`` (fixed input (height, width), or dynamic for None) and compare it with torch on ``frame``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(detector, path, input_size=input_size)
    engine = OnnxRuntimeDetector(path)
    images, _ = engine.prepare([frame], padded_batch=1)
    onnx_boxes, onnx_scores = engine.session.run(["boxes", "scores"], {"images": images})
    detector.eval()
    with torch.no_grad():
        boxes, scores = (t.numpy() for t in ExportableDetector(detector)(torch.from_numpy(images)))
    engine.close()
    score_difference = float(np.abs(np.sort(onnx_scores, axis=None) - np.sort(scores, axis=None)).max())
    scored = scores > 0
    return ExportCheck(score_difference, nearest_box_distance(boxes[scored], onnx_boxes[onnx_scores > 0]),
                       int(scored.sum()))


def nearest_box_distance(boxes: np.ndarray, candidates: np.ndarray) -> float:
    """max over ``boxes`` [N, 4] of the distance (largest coordinate difference) to the nearest of ``candidates``
    [M, 4]; 0 without boxes, inf without candidates."""
    if len(boxes) == 0:
        return 0.0
    if len(candidates) == 0:
        return float("inf")
    distance = np.zeros((len(boxes), len(candidates)), np.float32)
    for coordinate in range(4):
        np.maximum(distance, np.abs(boxes[:, None, coordinate] - candidates[None, :, coordinate]), out=distance)
    return float(distance.min(axis=1).max())
