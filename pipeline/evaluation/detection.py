"""IRST detection metrics: probability of detection (Pd) and false alarms per frame, matched by centre distance."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipeline.evaluation.matching import box_centres, centre_distances, check_match_distance, gate, min_cost_matching
from pipeline.evaluation.motfile import as_mot_rows


def evaluate_detections(gt: np.ndarray, detection_centres_per_frame: Mapping[int, np.ndarray],
                        match_distance_px: float = 5.0) -> dict[str, float | int]:
    """Pd = matched gt / all gt and false alarms per frame = unmatched detections / frames.

    gt: [M, 6] rows frame (1-based), id, x, y, w, h (ids are ignored; targets are box centres).
    detection_centres_per_frame: frame number (1-based, as in gt) -> float [N, 2] detection centres (x, y) px.
    Give every frame the detector ran on, with an empty [0, 2] array where it found nothing, so that the frame
    counts in the false-alarm rate. Frames are those keys plus any frame with gt (its gt count as missed if
    the frame has no detections). In each frame gt and detections are paired one-to-one within
    ``match_distance_px``: as many pairs as possible, then the smallest total distance (Hungarian).
    Pd is NaN without gt, false_alarms_per_frame NaN without frames.
    """
    check_match_distance(match_distance_px)
    gt = as_mot_rows(gt, "gt")
    gt = gt[np.argsort(gt[:, 0], kind="stable")]
    gt_frames, starts = np.unique(gt[:, 0], return_index=True)
    gt_centres_by_frame = dict(zip(gt_frames.astype(int).tolist(), np.split(box_centres(gt), starts[1:])))
    frames = set(gt_centres_by_frame) | {int(f) for f in detection_centres_per_frame}
    num_matched = num_detections = 0
    for frame in frames:
        detections = _as_centres(detection_centres_per_frame.get(frame, np.zeros((0, 2))), frame)
        gt_centres = gt_centres_by_frame.get(frame, np.zeros((0, 2)))
        rows, _ = min_cost_matching(gate(centre_distances(gt_centres, detections), match_distance_px))
        num_matched += len(rows)
        num_detections += len(detections)
    num_false_alarms = num_detections - num_matched
    return {
        "pd": num_matched / len(gt) if len(gt) else float("nan"),
        "false_alarms_per_frame": num_false_alarms / len(frames) if frames else float("nan"),
        "num_gt": len(gt),
        "num_detections": num_detections,
        "num_matched": num_matched,
        "num_false_alarms": num_false_alarms,
        "num_frames": len(frames),
        "match_distance_px": float(match_distance_px),
    }


def _as_centres(centres: np.ndarray, frame: int) -> np.ndarray:
    array = np.asarray(centres, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or not np.all(np.isfinite(array)):
        raise ValueError(f"detection centres of frame {frame} must be a finite [N, 2] array of x, y, "
                         f"got shape {array.shape}")
    return array
