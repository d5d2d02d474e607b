"""Starting states of tracks: from one detection (velocity unknown) and from two (two-point differencing).

A one-point state has zero velocity and acceleration, so its prediction is the first detection itself (moved
by any camera shift): the tracker passes that prediction as the first point of the two-point state.
"""
from __future__ import annotations

import numpy as np

from trackers.motion import POSITION_DIMS

P2 = POSITION_DIMS


def _higher_derivative_covariance(n: int, state_dims: int, velocity_var: float, acceleration_var: float
                                  ) -> np.ndarray:
    """[n, D, D] zero matrices with the prior variances on the velocity (and acceleration) diagonal."""
    variances = [0.0, velocity_var, acceleration_var][:state_dims // P2]
    prior = np.diag(np.repeat(variances, P2))
    return np.broadcast_to(prior, (n, state_dims, state_dims)).copy()


def one_point_states(z: np.ndarray, R: np.ndarray, state_dims: int, velocity_var: float, acceleration_var: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """States [n, D] and covariances [n, D, D] of tracks born from detections z [n, 2], R [n, 2, 2]."""
    x = np.zeros((len(z), state_dims))
    x[:, :P2] = z
    P = _higher_derivative_covariance(len(z), state_dims, velocity_var, acceleration_var)
    P[:, :P2, :P2] = R
    return x, P


def two_point_states(z1: np.ndarray, R1: np.ndarray, z2: np.ndarray, R2: np.ndarray, dt: np.ndarray,
                     state_dims: int, acceleration_var: float) -> tuple[np.ndarray, np.ndarray]:
    """States at the second detection: position z2, velocity (z2 - z1) / dt, with its exact covariance.

    z1, z2 [n, 2]; R1, R2 [n, 2, 2]; dt [n] frames between them. cov(v) = (R1 + R2) / dt^2,
    cov(p, v) = R2 / dt. Acceleration (constant-acceleration model) starts at 0 with its prior variance.
    """
    dt = np.asarray(dt, dtype=np.float64)
    x = np.zeros((len(z2), state_dims))
    x[:, :P2] = z2
    x[:, P2:2 * P2] = (z2 - z1) / dt[:, None]
    P = _higher_derivative_covariance(len(z2), state_dims, 0.0, acceleration_var)
    cross = R2 / dt[:, None, None]
    P[:, :P2, :P2] = R2
    P[:, :P2, P2:2 * P2] = cross
    P[:, P2:2 * P2, :P2] = cross.transpose(0, 2, 1)
    P[:, P2:2 * P2, P2:2 * P2] = (R1 + R2) / (dt * dt)[:, None, None]
    return x, P
