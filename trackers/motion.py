"""Motion models as (F, Q) for a time step: constant velocity and constant acceleration in the image plane.

States are ordered by derivative, x, y, vx, vy[, ax, ay], so the first four entries are always the reported
(x, y, vx, vy) and the measured position is always entries 0 and 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

POSITION_DIMS = 2


def discrete_white_noise(order: int, dt: float, variance: float) -> np.ndarray:
    """Process noise [2*order, 2*order] of a piecewise-constant white noise on the highest derivative.

    Same matrix as filterpy's ``Q_discrete_white_noise(order, dt, variance, block_size=2, order_by_dim=False)``
    (Bar-Shalom, Estimation with Applications to Tracking and Navigation, p. 274): Q = G G^T variance with
    G = [dt^2/2, dt] (order 2) or [dt^2/2, dt, 1] (order 3) per axis, the two image axes independent.
    """
    if order == 2:
        gain = np.array([0.5 * dt ** 2, dt])
        per_axis = np.outer(gain, gain)
    elif order == 3:
        per_axis = np.array([[0.25 * dt ** 4, 0.5 * dt ** 3, 0.5 * dt ** 2],
                             [0.5 * dt ** 3, dt ** 2, dt],
                             [0.5 * dt ** 2, dt, 1.0]])
    else:
        raise ValueError(f"order must be 2 (constant velocity) or 3 (constant acceleration), got {order}")
    return np.kron(per_axis, np.eye(POSITION_DIMS)) * variance


def transition(order: int, dt: float) -> np.ndarray:
    """State transition F [2*order, 2*order]: each derivative integrates the higher ones over ``dt``."""
    per_axis = np.zeros((order, order))
    for k in range(order):
        for j in range(k, order):
            per_axis[k, j] = dt ** (j - k) / math.factorial(j - k)
    return np.kron(per_axis, np.eye(POSITION_DIMS))


@dataclass(frozen=True)
class MotionModel:
    """A polynomial motion model: ``order`` 2 is constant velocity, 3 constant acceleration."""

    order: int
    process_noise: float

    @staticmethod
    def named(name: str, process_noise: float) -> "MotionModel":
        return MotionModel({"cv": 2, "ca": 3}[name], process_noise)

    @property
    def state_dims(self) -> int:
        return POSITION_DIMS * self.order

    def matrices(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """(F, Q) for a step of ``dt`` frames, read-only (cached: the same few steps recur every frame)."""
        return _cached_matrices(self.order, float(dt), self.process_noise)


@lru_cache(maxsize=64)
def _cached_matrices(order: int, dt: float, process_noise: float) -> tuple[np.ndarray, np.ndarray]:
    F, Q = transition(order, dt), discrete_white_noise(order, dt, process_noise)
    F.flags.writeable = Q.flags.writeable = False
    return F, Q
