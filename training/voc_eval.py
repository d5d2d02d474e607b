"""DenseSIRST detection metrics as the BAFE-Net reference reports them (mmdet ``VOCMetric`` -> ``eval_map``).

VOC AP at IoU 0.5 with legacy (+1) pixel coordinates, in original image coordinates: mAP07 = 11-point AP, mAP12 =
all-point (area) AP, recall = the final point of the recall curve. Also Pd / false alarms by centroid distance, Pd at
fixed false-alarm rates, and a PR-curve picture. Single class ("Target"), so AP and mAP are the same number.

Matching, as mmdet's ``tpfp_default``: in each image, detections in descending score order take the ground-truth box
of highest IoU (first one on ties) over all gt, difficult included. IoU >= threshold and that gt not yet taken: TP;
already taken: FP (even if another free gt also overlaps enough, as in the VOC devkit); a difficult gt: neither TP
nor FP; IoU below threshold: FP. Then all detections are ranked by score: precision = TP/(TP+FP), recall = TP/#gt
(difficult gt not counted). Score ties keep their input order (image order, then detection order): mmdet's
``argsort(-score)`` leaves them to numpy's unstable quicksort, which cannot be reproduced across machines.
Two differences from mmdet, both deliberate: AP is computed in float64 (mmdet stores it in float32, ~1e-8) and
returned unrounded (VOCMetric rounds to 3 decimals); with no (non-difficult) gt at all AP and recall are NaN
(undefined) where mmdet reports 0.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.evaluation import evaluate_detections
from pipeline.types import Detections

# mmdet's 11 recall thresholds, kept bit for bit: np.arange gives 0.30000000000000004, 0.6000000000000001 and
# 0.7000000000000001, so a recall of exactly 0.3, 0.6 or 0.7 (e.g. 3 of 5 gt) does not reach its own threshold.
ELEVEN_POINT_THRESHOLDS = np.arange(0, 1 + 1e-3, 0.1)
FLOAT32_EPS = float(np.finfo(np.float32).eps)  # mmdet's guard against dividing by zero gt or zero detections


@dataclass(frozen=True)
class VocResult:
    """AP of one class over a set of images. Curves are float64 [D], one point per detection in ranked order."""

    ap_11point: float  # "mAP07" of the paper and README
    ap_area: float  # "mAP12"
    recall: float  # final recall: TP / #gt over all detections
    precisions: np.ndarray
    recalls: np.ndarray
    num_gt: int
    num_detections: int
    iou_threshold: float


def legacy_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU [N, M] with +1 widths (a box [x1, x2] covers x2 - x1 + 1 pixels), in float32 like mmdet's bbox_overlaps.

    float32 matters only at the 0.5 boundary, where it decides TP or FP exactly as the reference did.
    """
    a = np.asarray(boxes_a, np.float32).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float32).reshape(-1, 4)
    one = np.float32(1.0)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    overlap_w = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one,
                           np.float32(0))
    overlap_h = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one,
                           np.float32(0))
    overlap = overlap_w * overlap_h
    union = np.maximum(area_a[:, None] + area_b[None, :] - overlap, np.float32(1e-6))
    return overlap / union


def average_precision_11point(recalls: np.ndarray, precisions: np.ndarray) -> float:
    """Mean over the 11 thresholds t of the highest precision at recall >= t (0 where no point reaches t)."""
    return float(np.mean([precisions[recalls >= t].max() if (recalls >= t).any() else 0.0
                          for t in ELEVEN_POINT_THRESHOLDS]))


def average_precision_area(recalls: np.ndarray, precisions: np.ndarray) -> float:
    """VOC2010+ AP: precision made non-increasing from the right, area under the step curve in recall."""
    recall = np.concatenate([[0.0], recalls, [1.0]])
    precision = np.maximum.accumulate(np.concatenate([[0.0], precisions, [0.0]])[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def evaluate_voc(detections: Sequence[Detections], gt_boxes: Sequence[np.ndarray],
                 gt_difficult: Sequence[np.ndarray] | None = None, iou_threshold: float = 0.5) -> VocResult:
    """AP of ``detections`` (one per image, boxes in original pixels) against ``gt_boxes`` (float [M, 4] per image,
    the minus-one XML boxes), optionally with difficult flags (bool [M] per image)."""
    if len(detections) != len(gt_boxes) or (gt_difficult is not None and len(gt_difficult) != len(gt_boxes)):
        raise ValueError(f"need one detection set and one gt set per image, got {len(detections)} detection sets, "
                         f"{len(gt_boxes)} gt sets"
                         + ("" if gt_difficult is None else f" and {len(gt_difficult)} difficult-flag sets"))
    scores, true_positive, false_positive = [], [], []
    num_gt = 0
    for index, (found, gt) in enumerate(zip(detections, gt_boxes)):
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        difficult = (np.zeros(len(gt), bool) if gt_difficult is None
                     else np.asarray(gt_difficult[index], bool).reshape(-1))
        if len(difficult) != len(gt):
            raise ValueError(f"image {index}: {len(gt)} gt boxes but {len(difficult)} difficult flags")
        image_scores = _checked_scores(found, index)
        tp, fp = _match_image(np.asarray(found.boxes, np.float64).reshape(-1, 4), image_scores, gt, difficult,
                              iou_threshold)
        scores.append(image_scores)
        true_positive.append(tp)
        false_positive.append(fp)
        num_gt += int((~difficult).sum())
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    order = np.argsort(-all_scores, kind="stable")
    tp_cumulative = np.cumsum(np.concatenate(true_positive)[order]) if scores else np.zeros(0)
    fp_cumulative = np.cumsum(np.concatenate(false_positive)[order]) if scores else np.zeros(0)
    recalls = tp_cumulative / max(num_gt, FLOAT32_EPS)
    precisions = tp_cumulative / np.maximum(tp_cumulative + fp_cumulative, FLOAT32_EPS)
    if num_gt == 0:
        ap_11point = ap_area = recall = float("nan")
    else:
        ap_11point = average_precision_11point(recalls, precisions)
        ap_area = average_precision_area(recalls, precisions)
        recall = float(recalls[-1]) if len(recalls) else 0.0
    return VocResult(ap_11point, ap_area, recall, precisions, recalls, num_gt, len(all_scores), float(iou_threshold))


def _checked_scores(found: Detections, index: int) -> np.ndarray:
    scores = np.asarray(found.scores, np.float64).reshape(-1)
    if len(scores) != len(found.boxes) or not np.all(np.isfinite(scores)) or \
            not np.all(np.isfinite(np.asarray(found.boxes, np.float64))):
        raise ValueError(f"image {index}: detections need finite boxes [N, 4] and one finite score each, got "
                         f"{np.shape(found.boxes)} boxes and {scores.shape} scores")
    return scores


def _match_image(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, difficult: np.ndarray,
                 iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP flags (float [D], detection order) of one image, mmdet's tpfp_default with legacy coordinates."""
    true_positive, false_positive = np.zeros(len(boxes)), np.zeros(len(boxes))
    if len(gt) == 0:
        false_positive[:] = 1.0
        return true_positive, false_positive
    if len(boxes) == 0:
        return true_positive, false_positive
    ious = legacy_iou(boxes, gt)
    best_iou, best_gt = ious.max(axis=1), ious.argmax(axis=1)
    covered = np.zeros(len(gt), bool)
    for i in np.argsort(-scores, kind="stable"):
        if best_iou[i] < iou_threshold:
            false_positive[i] = 1.0
        elif difficult[best_gt[i]]:
            continue
        elif covered[best_gt[i]]:
            false_positive[i] = 1.0
        else:
            covered[best_gt[i]] = True
            true_positive[i] = 1.0
    return true_positive, false_positive


def pd_fa(detections: Sequence[Detections], gt_boxes: Sequence[np.ndarray], *, score_threshold: float,
          match_distance_px: float = 3.0) -> dict[str, float | int]:
    """IRST probability of detection and false alarms per image at one operating point, by centroid distance.

    Detections scoring >= ``score_threshold`` and gt boxes are reduced to their centres ((x1 + x2) / 2, (y1 + y2) / 2,
    the same for minus-one gt and predicted boxes) and paired one-to-one within ``match_distance_px`` original pixels
    (3 px, the usual SIRST centroid criterion), most pairs first, then the smallest total distance.
    Pd = matched gt / all gt; false_alarms_per_image = unmatched detections / images. Difficult flags are not used.
    """
    if len(detections) != len(gt_boxes):
        raise ValueError(f"need one detection set per image: {len(detections)} detection sets, {len(gt_boxes)} gt sets")
    gt_rows, centres = [], {}
    for index, (found, gt) in enumerate(zip(detections, gt_boxes)):
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        # MOTChallenge rows (frame, id, x, y, w, h): the matcher takes x + w / 2 as the centre, i.e. (x1 + x2) / 2.
        gt_rows.append(np.column_stack([np.full(len(gt), index + 1), np.arange(len(gt)), gt[:, :2],
                                        gt[:, 2:] - gt[:, :2]]))
        keep = _checked_scores(found, index) >= score_threshold
        boxes = np.asarray(found.boxes, np.float64).reshape(-1, 4)[keep]
        centres[index + 1] = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    result = evaluate_detections(np.concatenate(gt_rows) if gt_rows else np.zeros((0, 6)), centres,
                                 match_distance_px)
    return {
        "pd": result["pd"],
        "false_alarms_per_image": result["false_alarms_per_frame"],
        "num_gt": result["num_gt"],
        "num_detections": result["num_detections"],
        "num_matched": result["num_matched"],
        "num_false_alarms": result["num_false_alarms"],
        "num_images": len(detections),
        "score_threshold": float(score_threshold),
        "match_distance_px": float(match_distance_px),
    }


def pd_at_false_alarm_rates(detections: Sequence[Detections], gt_boxes: Sequence[np.ndarray], rates: Sequence[float],
                            thresholds: Sequence[float], match_distance_px: float = 3.0
                            ) -> tuple[list[dict[str, float | int]], dict[float, float | None]]:
    """Detectors compared at the same false-alarm rate, since score scales differ between models: (``pd_fa`` at each
    score threshold of ``thresholds``, {rate: Pd at ``rate`` false alarms per image}).

    Pd is interpolated linearly between the two thresholds around the rate. Both Pd and false alarms only grow as the
    threshold falls (one more detection adds at most one matched pair); of thresholds with equal false alarms the
    lowest, with the highest Pd, counts (np.interp takes the last equal x). A rate above the lowest threshold's false
    alarms gets that threshold's Pd (the detector stays below the rate); one below the highest threshold's gets None.
    """
    sweep = [pd_fa(detections, gt_boxes, score_threshold=float(t), match_distance_px=match_distance_px)
             for t in thresholds]
    falling = sorted(sweep, key=lambda point: -point["score_threshold"])
    false_alarms = np.array([point["false_alarms_per_image"] for point in falling])
    pds = np.array([point["pd"] for point in falling])
    at_rate = {rate: float(np.interp(rate, false_alarms, pds)) if len(falling) and false_alarms[0] <= rate else None
               for rate in rates}
    return sweep, at_rate


def write_pr_curve(result: VocResult, path: str | Path, title: str = "DenseSIRST precision-recall") -> Path:
    """Save the ranked precision-recall curve with mAP07 / mAP12 / recall in the legend as a PNG (Agg, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(5, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    label = (f"mAP07 {result.ap_11point:.3f}  mAP12 {result.ap_area:.3f}  recall {result.recall:.3f}\n"
             f"{result.num_detections} detections, {result.num_gt} gt, IoU {result.iou_threshold:g} (+1 px)")
    axes.plot(result.recalls, result.precisions, drawstyle="steps-post", label=label)
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize=7)
    figure.savefig(path)
    return path
