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


def update(x: np.ndarray, P: np.ndarray, z: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors of tracks x [M, D], P [M, D, D] given one position z [M, 2] with covariance R [M, 2, 2] each.

    Joseph form P = (I - K H) P (I - K H)^T + K R K^T, as filterpy: it stays symmetric positive definite under
    rounding, which matters for tracks that coast for long and then reacquire. With H = [I 0] it is computed as
    A - (A H^T - K R) K^T where A = (I - K H) P. The products are written out entry by entry on [D, D, M]
    copies, so that each numpy call is one long loop over the tracks rather than M tiny matrix products (a
    third faster at 500 tracks); the arithmetic is filterpy's, operation for operation.
    """
    P = np.ascontiguousarray(P.transpose(1, 2, 0))
    R = np.ascontiguousarray(R.transpose(1, 2, 0))
    S00, S01, S11 = P[0, 0] + R[0, 0], P[0, 1] + R[0, 1], P[1, 1] + R[1, 1]
    det = S00 * S11 - S01 * S01
    inverse00, inverse01, inverse11 = S11 / det, -S01 / det, S00 / det
    # P is symmetric only up to rounding: as filterpy, K uses the columns of P (P H^T) and everything that
    # multiplies P from the left uses its rows (H P); mixing them lets the asymmetry grow from step to step.
    PH0, PH1, HP0, HP1 = P[:, 0], P[:, 1], P[0], P[1]  # [D, M] each
    K0 = PH0 * inverse00 + PH1 * inverse01  # the columns of K = P H^T S^-1
    K1 = PH0 * inverse01 + PH1 * inverse11
    Kt0 = inverse00 * HP0 + inverse01 * HP1  # the rows of K^T = S^-1 H P
    Kt1 = inverse01 * HP0 + inverse11 * HP1
    residual = (z - x[:, :P2]).T
    x = x + (residual[0] * Kt0).T + (residual[1] * Kt1).T
    A = P - (K0[:, None] * HP0[None] + K1[:, None] * HP1[None])  # (I - K H) P
    B0 = A[:, 0] - (K0 * R[0, 0] + K1 * R[1, 0])  # the columns of A H^T - K R
    B1 = A[:, 1] - (K0 * R[0, 1] + K1 * R[1, 1])
    P = A - (B0[:, None] * Kt0[None] + B1[:, None] * Kt1[None])
    return x, np.ascontiguousarray(P.transpose(2, 0, 1))


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
