"""Detections turned into Kalman measurements: box centres, their noise covariance, and the box sizes.

Rows a detector should never produce (NaN or infinite values, a covariance that is not positive definite)
are dropped and counted rather than allowed to poison every track they could be associated with.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import UserError
from pipeline.types import Detections

# Scores below this still get a finite noise: a 0.01-score detection is weak evidence, not no evidence.
MIN_NOISE_SCORE = 0.1


@dataclass(frozen=True)
class Measurements:
    """positions float64 [N, 2] box centres; covariances float64 [N, 2, 2] (px^2); sizes float32 [N, 2] (w, h)."""

    positions: np.ndarray
    covariances: np.ndarray
    sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)


def check_shapes(detections: Detections, stream_id: str) -> None:
    """Raise UserError naming the stream if the arrays break the Detections contract (a detector bug)."""
    scores_shape = np.shape(detections.scores)
    if len(scores_shape) != 1:
        problems = [f"scores has shape {scores_shape}, expected [N]"]
    else:
        n = scores_shape[0]
        problems = [f"{name} has shape {np.shape(array)}, expected {list(shape)}"
                    for name, array, shape in (("boxes", detections.boxes, (n, 4)),
                                               ("covariances", detections.covariances, (n, 2, 2)))
                    if array is not None and np.shape(array) != shape]
    if problems:
        raise UserError(f"stream '{stream_id}': detections do not match the Detections contract: "
                        + "; ".join(problems) + ". Fix the detector's output.")


def to_measurements(detections: Detections, noise_px: float, noise_size_fraction: float
                    ) -> tuple[Measurements, int]:
    """(measurements of the valid rows, number of rows dropped as invalid).

    Without detector covariances, each axis gets variance (noise_px^2 + (noise_size_fraction * size)^2) / score,
    score clipped to [MIN_NOISE_SCORE, 1]: bigger blobs and weaker detections localise the target worse.
    """
    boxes = np.asarray(detections.boxes, dtype=np.float64)
    scores = np.asarray(detections.scores, dtype=np.float64)
    given = None if detections.covariances is None else np.asarray(detections.covariances, dtype=np.float64)
    valid = _valid_rows(boxes, scores, given)
    dropped = 0 if valid is None else len(boxes) - int(np.count_nonzero(valid))
    if dropped:
        boxes, scores = boxes[valid], scores[valid]
        given = None if given is None else given[valid]
    sizes = np.abs(boxes[:, 2:] - boxes[:, :2])
    if given is not None:
        covariances = 0.5 * (given + given.transpose(0, 2, 1))
    else:
        variances = noise_px ** 2 + (noise_size_fraction * sizes) ** 2
        variances /= np.minimum(np.maximum(scores, MIN_NOISE_SCORE), 1.0)[:, None]
        covariances = np.zeros((len(boxes), 2, 2))
        covariances[:, 0, 0], covariances[:, 1, 1] = variances[:, 0], variances[:, 1]
    return Measurements(0.5 * (boxes[:, :2] + boxes[:, 2:]), covariances, sizes.astype(np.float32)), dropped


def _valid_rows(boxes: np.ndarray, scores: np.ndarray, covariances: np.ndarray | None) -> np.ndarray | None:
    """bool [N]: rows without NaN or infinite values and with a positive-definite covariance; None when every
    row is valid and there is no covariance to check (the usual case, found with two cheap whole-array tests)."""
    if covariances is None and np.isfinite(boxes).all() and np.isfinite(scores).all():
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        valid = np.isfinite(boxes.sum(axis=1) + scores)  # a NaN or inf anywhere in a row makes its sum non-finite
        if covariances is not None:
            a, b, c, d = covariances[:, 0, 0], covariances[:, 0, 1], covariances[:, 1, 0], covariances[:, 1, 1]
            valid &= np.isfinite(a + b + c + d) & (a > 0) & (a * d - 0.25 * (b + c) ** 2 > 0)
    return valid
