"""Which (track, detection) pairs may associate: a cheap Euclidean pre-gate, then the Mahalanobis gate.

The pre-gate radius of a track bounds its Mahalanobis gate (|y|^2 <= gamma * largest eigenvalue of S), so it
never drops a pair the exact gate would keep; it only keeps the exact gate from looking at all T x N pairs
(small problems skip it: there, testing every pair is cheaper).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from trackers.motion import POSITION_DIMS

# Up to this many (track, detection) pairs the exact gate tests them all: cheaper than the pre-gate's search
# (measured: the two cost the same at about 5000 pairs).
ALL_PAIRS_MAX = 4096


def gate_threshold(probability: float) -> float:
    """Squared Mahalanobis distance holding ``probability`` of a track's own detections (chi-square, 2 dof)."""
    return float(chi2.ppf(probability, POSITION_DIMS))


def largest_eigenvalue_2x2(S: np.ndarray) -> np.ndarray:
    """Largest eigenvalue of each symmetric S [..., 2, 2]."""
    a, b, d = S[..., 0, 0], S[..., 0, 1], S[..., 1, 1]
    return 0.5 * (a + d) + np.sqrt(0.25 * (a - d) ** 2 + b * b)


def _expand_runs(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every element of the runs starts[i] + (0 .. counts[i] - 1): (its run i, its value), run by run."""
    runs = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts  # where each run begins in the output
    return runs, np.arange(runs.size) + np.repeat(starts - first, counts)


def pairs_within_radius(points: np.ndarray, radii: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with |points[i] - targets[j]| <= radii[i], without forming the T x N distance matrix.

    Targets are bucketed into columns about two radii wide and sorted by (column, y); each point
    binary-searches its y range in every column its x range touches, and only those candidates get the exact
    distance test. Returns (i, j) int arrays, sorted by i.
    """
    if len(points) == 0 or len(targets) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    # One axis at a time throughout: numpy is much slower on [n, 2] rows than on 1-D columns.
    (point_x, point_y), (target_x, target_y) = points.T, targets.T
    # The mean radius, not the median: a few wide gates only widen the columns a little, and a median costs
    # as much as the whole search on small inputs.
    per_column = 1.0 / max(2.0 * float(radii.mean()), 1.0)  # columns per pixel
    x0, y0 = target_x.min(), target_y.min()
    last = np.floor((target_x.max() - x0) * per_column)  # the last column
    span = target_y.max() - y0 + 1.0  # keys column * span + (y - y0) sort by column, then by y
    keys = np.floor((target_x - x0) * per_column) * span + (target_y - y0)
    order = np.argsort(keys)
    keys = keys[order]
    # (np.floor, np.minimum and np.maximum: several times faster than //, np.clip on small arrays)
    first_column = np.maximum(np.floor((point_x - radii - x0) * per_column), 0).astype(np.intp)
    last_column = np.minimum(np.floor((point_x + radii - x0) * per_column), last).astype(np.intp)
    searches, columns = _expand_runs(first_column, np.maximum(last_column - first_column + 1, 0))
    # y bounds held inside the column's own key range [column * span - 0.5, (column + 1) * span - 0.5).
    y, r, base = point_y[searches] - y0, radii[searches], columns * span
    low_keys = base + np.minimum(np.maximum(y - r, -0.5), span - 0.5)
    high_keys = base + np.minimum(np.maximum(y + r, -0.5), span - 0.5)
    # Binary searches run about twice as fast on needles in increasing order (each starts where the last ended).
    ascending = np.argsort(low_keys)
    lo, hi = np.empty(len(searches), np.intp), np.empty(len(searches), np.intp)
    lo[ascending] = np.searchsorted(keys, low_keys[ascending], side="left")
    hi[ascending] = np.searchsorted(keys, high_keys[ascending], side="right")
    candidate_search, sorted_index = _expand_runs(lo, hi - lo)
    rows, cols = searches[candidate_search], order[sorted_index]
    dx, dy = point_x[rows] - target_x[cols], point_y[rows] - target_y[cols]
    inside = dx * dx + dy * dy <= radii[rows] ** 2
    return rows[inside], cols[inside]


@dataclass(frozen=True)
class GatedPairs:
    """Pairs inside the gate: tracks, detections int [M]; costs [M] = d^2 + ln|S| (the negative log-likelihood
    of the pair up to a constant: N(y; 0, S) = exp(-cost / 2) / 2 pi)."""

    tracks: np.ndarray
    detections: np.ndarray
    costs: np.ndarray

    def __len__(self) -> int:
        return len(self.costs)


def mahalanobis_gate(positions: np.ndarray, position_covariances: np.ndarray, z: np.ndarray, R: np.ndarray,
                     threshold: float) -> GatedPairs:
    """Pairs (track t, detection j) with (z_j - p_t)^T S^-1 (z_j - p_t) <= threshold, S = P_t + R_j.

    positions [T, 2] and position_covariances [T, 2, 2] are the tracks' predicted positions; z [N, 2], R [N, 2, 2]
    the measurements. Pairs come out sorted by track.
    """
    if len(positions) * len(z) <= ALL_PAIRS_MAX:
        tracks, detections = np.divmod(np.arange(len(positions) * len(z)), max(len(z), 1))
    else:
        largest_R = largest_eigenvalue_2x2(R).max(initial=0.0)
        radii = np.sqrt(threshold * (largest_eigenvalue_2x2(position_covariances) + largest_R))
        tracks, detections = pairs_within_radius(positions, radii, z)
    # S = [[a, b], [b, d]] and the residual per pair, entry by entry (1-D arrays are fastest in numpy).
    a = position_covariances[:, 0, 0][tracks] + R[:, 0, 0][detections]
    b = position_covariances[:, 0, 1][tracks] + R[:, 0, 1][detections]
    d = position_covariances[:, 1, 1][tracks] + R[:, 1, 1][detections]
    dx = z[:, 0][detections] - positions[:, 0][tracks]
    dy = z[:, 1][detections] - positions[:, 1][tracks]
    det = a * d - b * b
    d2 = (d * dx * dx - 2.0 * b * dx * dy + a * dy * dy) / det
    inside = d2 <= threshold
    return GatedPairs(tracks[inside], detections[inside], d2[inside] + np.log(det[inside]))
