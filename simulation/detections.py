"""Detections made from ground truth with a detector's typical errors, so trackers can be benchmarked without one."""
from __future__ import annotations

import math

import numpy as np

from pipeline.errors import UserError
from pipeline.types import Detections

FALSE_ALARM_BOX_PX = 3.0  # false-alarm box size when the ground truth has no boxes to copy sizes from


def degrade_ground_truth(gt: np.ndarray, pd: float = 0.9, false_alarms_per_frame: float = 1.0,
                         position_noise_px: float = 0.5, width: int = 640, height: int = 512, seed: int = 0,
                         frames: int | None = None) -> dict[int, Detections]:
    """Per-frame detections {0-based frame: Detections} from MOTChallenge rows ``gt`` [M, >=6] (frame from 1,
    id, left, top, w, h).

    Each target is detected with probability ``pd``; its box keeps the ground-truth size and its centre gets
    Gaussian noise of ``position_noise_px`` std per axis (kept inside the width x height image). A Poisson
    number of false alarms (mean ``false_alarms_per_frame``) is placed uniformly over the image, with box sizes
    copied from random ground-truth rows. Detections come in random order, all with score 1. Every frame
    0 .. ``frames``-1 (default: up to the last ground-truth frame) has an entry, ``Detections.empty()`` when
    nothing was detected. The same arguments give the same detections.
    """
    gt = _check_ground_truth(gt)
    for name, value, ok in (("pd", pd, 0 <= pd <= 1),
                            ("false_alarms_per_frame", false_alarms_per_frame, 0 <= false_alarms_per_frame),
                            ("position_noise_px", position_noise_px, 0 <= position_noise_px),
                            ("width", width, width > 0), ("height", height, height > 0)):
        if not (math.isfinite(value) and ok):
            raise UserError(f"degrade_ground_truth: {name}={value!r} is out of range (pd is a probability 0..1, "
                            "the rates and noise are >= 0, the image size is positive)")
    last_frame = int(gt[:, 0].max()) if len(gt) else 0
    frames = last_frame if frames is None else frames
    if frames < last_frame:
        raise UserError(f"degrade_ground_truth: frames={frames} but the ground truth goes up to frame {last_frame}")

    rng = np.random.default_rng(seed)
    gt = gt[np.argsort(gt[:, 0], kind="stable")]
    bounds = np.searchsorted(gt[:, 0], np.arange(1, frames + 2))
    sizes = gt[:, 4:6] if len(gt) else np.full((1, 2), FALSE_ALARM_BOX_PX)
    image_size = np.array([width, height], dtype=np.float64)
    result = {}
    for index in range(frames):
        rows = gt[bounds[index]:bounds[index + 1]]
        rows = rows[rng.random(len(rows)) < pd]
        centres = rows[:, 2:4] + 0.5 * rows[:, 4:6] + rng.normal(0.0, position_noise_px, (len(rows), 2))
        alarms = rng.poisson(false_alarms_per_frame)
        centres = np.clip(np.concatenate([centres, rng.uniform(0, 1, (alarms, 2)) * image_size]), 0, image_size)
        box_sizes = np.concatenate([rows[:, 4:6], sizes[rng.integers(len(sizes), size=alarms)]])
        if len(centres) == 0:
            result[index] = Detections.empty()
            continue
        order = rng.permutation(len(centres))
        boxes = np.concatenate([centres - 0.5 * box_sizes, centres + 0.5 * box_sizes], axis=1)[order]
        result[index] = Detections(boxes.astype(np.float32), np.ones(len(boxes), np.float32))
    return result


def _check_ground_truth(gt: np.ndarray) -> np.ndarray:
    """float64 [M, 6] from MOTChallenge rows, or a UserError naming what is wrong."""
    gt = np.asarray(gt, dtype=np.float64)
    if gt.ndim != 2 or gt.shape[1] < 6:
        raise UserError(f"degrade_ground_truth: ground truth must be MOTChallenge rows [M, 6] "
                        f"(frame, id, x, y, w, h), got shape {gt.shape}")
    gt = gt[:, :6]
    if not np.isfinite(gt).all():
        raise UserError("degrade_ground_truth: ground truth contains NaN or infinite values")
    if len(gt) and (gt[:, 0].min() < 1 or not np.array_equal(gt[:, 0], np.round(gt[:, 0]))):
        raise UserError("degrade_ground_truth: ground-truth frame numbers must be whole numbers counted from 1")
    return gt
