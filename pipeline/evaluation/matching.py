"""Centre-distance matching shared by the tracking and detection metrics (point targets: never box IoU)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_centres(rows: np.ndarray) -> np.ndarray:
    """float64 [M, 2] centres (x + w/2, y + h/2) of MOTChallenge rows [M, 6] (frame, id, x, y, w, h)."""
    return rows[:, 2:4] + 0.5 * rows[:, 4:6]


def centre_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [N, M] in pixels between points a [N, 2] and b [M, 2]."""
    diff = a[:, None, :] - b[None, :, :]
    return np.sqrt(np.sum(diff * diff, axis=-1))


def min_cost_matching(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment on ``costs`` [N, M] where NaN marks pairs that must not match.

    Forbidden pairs get a cost so large that the solution first matches as many pairs as possible, then
    minimises the total cost; they are dropped from the result. This is py-motmetrics' construction for
    scipy, so ties are broken exactly as there. Returns (rows, cols), int arrays of equal length.
    """
    valid = np.isfinite(costs)
    if not valid.any():
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    finite = costs
    if not valid.all():
        largest = np.abs(costs[valid]).max() + 1.0
        finite = np.where(valid, costs, 2.0 * min(costs.shape) * largest + 1.0)
    rows, cols = linear_sum_assignment(finite)
    keep = valid[rows, cols]
    return rows[keep], cols[keep]


def gate(distances: np.ndarray, match_distance_px: float) -> np.ndarray:
    """Distances with pairs farther apart than ``match_distance_px`` set to NaN (a pair at exactly D matches)."""
    return np.where(distances <= match_distance_px, distances, np.nan)


def check_match_distance(match_distance_px: float) -> None:
    if not (np.isfinite(match_distance_px) and match_distance_px > 0):
        raise ValueError(f"match_distance_px must be a positive number of pixels, got {match_distance_px!r}")
