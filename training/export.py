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
    """Largest |ONNX Runtime - torch| over all candidate scores, and over the boxes of candidates scoring > 0
    (zero-score slots hold arbitrary tied locations, in an order the two runtimes may break differently)."""

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
    scored = scores > 0
    box_difference = float(np.abs(onnx_boxes[scored] - boxes[scored]).max()) if scored.any() else 0.0
    return ExportCheck(float(np.abs(onnx_scores - scores).max()), box_difference, int(scored.sum()))
