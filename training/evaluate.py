"""Detection on a DenseSIRST split and its VOC scores, as the reference's test pipeline (bafenet-reference.md 1.3, 5.1).

Per image: the model's candidates (decoded boxes in network-input pixels, score = class x centerness probability,
the per-level top-K) -> boxes divided by the resize's scale factor (original pixels) and clipped to the image ->
empty boxes and zero-score slots dropped -> NMS at IoU 0.5 -> the best 100 (mmdet's order: rescale, then NMS).
Then ``evaluate_voc`` against the minus-one XML boxes in original pixels, and Pd by centroid distance at a fixed
false-alarm rate (``pd_at_fa``): the operating point a tracker is fed, which VOC AP at IoU 0.5 can miss. A model whose
boxes overlap the targets but whose centres sit a few pixels off scores well in AP and poorly in Pd.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from engines.postprocess import nms
from models.detector import Detector
from models.export import ExportableDetector
from pipeline.progress import ProgressLine
from pipeline.types import Detections
from training.batches import ResizedTestSet
from training.splits import collate_grey
from training.voc_eval import VocResult, evaluate_voc, pd_at_false_alarm_rates, write_pr_curve

# grey images [N, 1, H, W] in [0, 1] -> boxes [N, K, 4] (x1, y1, x2, y2, input pixels) and scores [N, K]
CandidateFn = Callable[[Tensor], tuple[Tensor, Tensor]]
PROTOCOL = ("VOC AP at IoU 0.5 with +1 (legacy) pixel coordinates, in original image pixels; mAP07 = 11-point AP, "
            "mAP12 = all-point (area) AP, recall = final recall over all kept detections; pd_at_fa = Pd by 3 px "
            "centroid distance at false_alarms_per_image, interpolated over score thresholds 0.02-0.98")
PD_THRESHOLDS = np.round(np.arange(0.02, 1.0, 0.02), 2)  # the score thresholds pd_at_fa is interpolated between


def detector_candidates(detector: Detector) -> CandidateFn:
    """The candidates the exported ONNX computes, from the torch model (the same decode code)."""
    exportable = ExportableDetector(detector)
    return lambda images: exportable(detector.normalize(images))


def detections_in_original_pixels(boxes: np.ndarray, scores: np.ndarray, scale_factor: tuple[float, float],
                                  original_hw: tuple[int, int], nms_iou: float, max_detections: int) -> Detections:
    """One image's detections from its candidates boxes [K, 4] (input pixels) and scores [K]."""
    sx, sy = scale_factor
    height, width = original_hw
    boxes = np.clip(boxes / np.array([sx, sy, sx, sy]), 0, [width, height, width, height])
    valid = (scores > 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores = boxes[valid], scores[valid]
    kept = nms(boxes, scores, nms_iou, max_detections)
    return Detections(boxes[kept].astype(np.float32), scores[kept].astype(np.float32))


@torch.no_grad()
def predict(candidates: CandidateFn, test_set: ResizedTestSet, *, batch_size: int, num_workers: int,
            device: torch.device, nms_iou: float, max_detections: int, label: str | None = None) -> list[Detections]:
    """Detections (original pixels) for every image of ``test_set``, in its order; ``label`` shows progress."""
    batches = same_size_batches(test_set.dataset.annotations, batch_size)
    loader = DataLoader(test_set, batch_sampler=batches, num_workers=num_workers, collate_fn=collate_grey)
    progress = ProgressLine(len(test_set), label) if label else None
    found: list[Detections | None] = [None] * len(test_set)
    done = 0
    for indices, batch in zip(batches, loader):
        boxes, scores = candidates(batch.images.to(device))
        boxes, scores = boxes.float().cpu().numpy().astype(np.float64), scores.float().cpu().numpy()
        for slot, index in enumerate(indices):
            found[index] = detections_in_original_pixels(
                boxes[slot], scores[slot], tuple(batch.scale_factors[slot].tolist()),
                tuple(batch.original_hw[slot].tolist()), nms_iou, max_detections)
        done += len(indices)
        if progress:
            progress.update(done)
    if progress:
        progress.finish(done)
    return found


def same_size_batches(annotations, batch_size: int) -> list[list[int]]:
    """Image indices in batches of one original size (annotation ``xml_hw``; unknown sizes form one group), groups
    in order of first appearance. A batch pads to its largest image, so with data.resize 'factor' a mixed batch
    would run 640x512 images at the 2560x2048 of an upscaled 1280x1024 one."""
    groups: dict[tuple[int, int] | None, list[int]] = {}
    for index, annotation in enumerate(annotations):
        groups.setdefault(annotation.xml_hw, []).append(index)
    return [members[start:start + batch_size] for members in groups.values()
            for start in range(0, len(members), batch_size)]


def score_split(test_set: ResizedTestSet, detections: list[Detections]) -> VocResult:
    annotations = test_set.dataset.annotations
    return evaluate_voc(detections, [a.boxes for a in annotations], [a.difficult for a in annotations])


def pd_at_false_alarms(test_set: ResizedTestSet, detections: list[Detections], false_alarms_per_image: float
                       ) -> float | None:
    """Pd by 3 px centroid distance at ``false_alarms_per_image`` (None: even the highest swept threshold makes more
    false alarms than that)."""
    gt = [annotation.boxes for annotation in test_set.dataset.annotations]
    return pd_at_false_alarm_rates(detections, gt, [false_alarms_per_image], PD_THRESHOLDS)[1][false_alarms_per_image]


def metrics(result: VocResult, pd_at_fa: float | None) -> dict[str, float | None]:
    """The four reported numbers; NaN (a split without ground truth) becomes None (JSON null)."""
    values = {"mAP07": result.ap_11point, "mAP12": result.ap_area, "recall": result.recall, "pd_at_fa": pd_at_fa}
    return {key: None if value is None or math.isnan(value) else value for key, value in values.items()}


def write_evaluation(result: VocResult, scores: dict[str, float | None], out_dir: Path, split: str,
                     info: dict[str, Any]) -> tuple[Path, Path]:
    """``eval_<split>.json`` (``scores`` from ``metrics``, counts, protocol, ``info`` about the model) and
    ``pr_<split>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"split": split, **scores, "num_gt": result.num_gt, "num_detections": result.num_detections,
              "iou_threshold": result.iou_threshold, "protocol": PROTOCOL, **info}
    json_path = out_dir / f"eval_{split}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    png_path = write_pr_curve(result, out_dir / f"pr_{split}.png", title=f"{info.get('model', 'model')} on {split}")
    return json_path, png_path
