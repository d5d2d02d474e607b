"""A linear Kalman filter run on all tracks at once: states x [T, D], covariances P [T, D, D].

The measurement is the position, the first two state entries (H = [I 0]), so innovations and gains are
written with slices instead of H products. Results equal filterpy's ``KalmanFilter.predict``/``update``
(Joseph-form covariance update) up to rounding; tests/test_trackers.py holds them to 1e-9.
"""
from __future__ import annotations

import numpy as np

from trackers.motion import POSITION_DIMS

P2 = POSITION_DIMS


def predict(x: np.ndarray, P: np.ndarray, F: np.ndarray, Q: np.ndarray,
            shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Priors x = F x + [shift, 0], P = F P F^T + Q for all tracks. ``shift`` [2] moves every position (camera pan)."""
    T, D = x.shape
    x = x @ F.T
    if shift is not None:
        x[:, :P2] += shift
    # Two plain matrix products over the stacked rows instead of T small ones: A = P F^T, then A^T F^T, which
    # is F P^T F^T = F P F^T because covariances are symmetric.
    PFt = (P.reshape(T * D, D) @ F.T).reshape(T, D, D)
    FPFt = (PFt.transpose(0, 2, 1).reshape(T * D, D) @ F.T).reshape(T, D, D)
    return x, FPFt + Q


def inverse_2x2(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S^-1, det S) for symmetric positive-definite S [..., 2, 2], closed form."""
    a, b, d = S[..., 0, 0], S[..., 0, 1], S[..., 1, 1]
    det = a * d - b * b
    inverse = np.empty_like(S)
    inverse[..., 0, 0] = d / det
    inverse[..., 1, 1] = a / det
    inverse[..., 0, 1] = inverse[..., 1, 0] = -b / det
    return inverse, det


def update(x: np.ndarray, P: np.ndarray, z: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors of tracks x [M, D], P [M, D, D] given one position z [M, 2] with covariance R [M, 2, 2] each.

    Joseph form P = (I - K H) P (I - K H)^T + K R K^T, as filterpy: it stays symmetric positive definite under
    rounding, which matters for tracks that coast for long and then reacquire. With H = [I 0] it is computed as
    A - (A H^T - K R) K^T where A = (I - K H) P.
    """
    residual = z - x[:, :P2]
    S_inv, _ = inverse_2x2(P[:, :P2, :P2] + R)
    HP = P[:, :P2, :]
    K = P[:, :, :P2] @ S_inv
    Kt = S_inv @ HP  # K^T, computed rather than transposed: matmul is much slower on transposed views
    x = x + residual[:, 0, None] * Kt[:, 0] + residual[:, 1, None] * Kt[:, 1]
    A = P - K @ HP  # (I - K H) P
    return x, A - (A[:, :, :P2] - K @ R) @ Kt


def merge_hypotheses(x_prior: np.ndarray, P_prior: np.ndarray, miss_weights: np.ndarray, pair_tracks: np.ndarray,
                     pair_weights: np.ndarray, x_pairs: np.ndarray, P_pairs: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Moment-matched Gaussian per track from its hypotheses (the JPDA state update).

    Track t has the "not detected" hypothesis (x_prior[t], P_prior[t]) with weight miss_weights[t] and one
    hypothesis per pair k with pair_tracks[k] == t (sorted): (x_pairs[k], P_pairs[k]) with weight
    pair_weights[k]; each track's weights sum to 1. Returns the mixture's mean and covariance (spread of the
    means included). With one detection noise for all pairs of a track, this is the classic JPDA update with a
    combined innovation.
    """
    x, P = miss_weights[:, None] * x_prior, miss_weights[:, None, None] * P_prior
    if len(pair_tracks) == 0:
        return x, P
    starts = np.flatnonzero(np.diff(pair_tracks, prepend=-1))
    owners = pair_tracks[starts]
    x[owners] += np.add.reduceat(pair_weights[:, None] * x_pairs, starts, axis=0)
    spread_prior = (x_prior - x)[:, :, None]
    P += miss_weights[:, None, None] * (spread_prior @ spread_prior.transpose(0, 2, 1))
    spread = (x_pairs - x[pair_tracks])[:, :, None]
    weighted = pair_weights[:, None, None] * (P_pairs + spread @ spread.transpose(0, 2, 1))
    P[owners] += np.add.reduceat(weighted, starts, axis=0)
    return x, P
