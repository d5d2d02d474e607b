"""Where things are in the synthetic world: the camera path, cluster formations and cluster trajectories.

World coordinates are image pixels of frame 0; the camera offset of frame t is the world position of that
frame's top-left corner, so a point at world position w appears at image position w - camera[t].
"""
from __future__ import annotations

import math

import numpy as np

PAN_SPEED_CORRELATION = 0.95  # per frame: the random pan speed changes smoothly over ~20 frames
TURN_RATE_CORRELATION = 0.98  # per frame: random turns last ~50 frames
VIEW_MARGIN_FRACTION = 0.1  # clusters steer back once heading closer than this fraction of the image to an edge
MAX_PLACEMENT_TRIES = 1000


def camera_path(frames: int, pan_px_per_frame: list[float], random_walk_px: float,
                rng: np.random.Generator) -> np.ndarray:
    """float64 [frames, 2] camera offsets (x, y), starting at (0, 0): constant pan plus a smooth random pan speed."""
    speed = np.zeros((frames, 2))
    if random_walk_px > 0:
        kicks = rng.standard_normal((frames, 2)) * random_walk_px * math.sqrt(1 - PAN_SPEED_CORRELATION ** 2)
        speed[0] = rng.standard_normal(2) * random_walk_px
        for t in range(1, frames):
            speed[t] = PAN_SPEED_CORRELATION * speed[t - 1] + kicks[t]
    speed += np.asarray(pan_px_per_frame, dtype=np.float64)
    offsets = np.zeros((frames, 2))
    offsets[1:] = np.cumsum(speed[:-1], axis=0)
    return offsets


def cluster_formation(radii: np.ndarray, gap_range: list[float], rng: np.random.Generator) -> np.ndarray:
    """float64 [n, 2] target offsets from the cluster centroid for targets of footprint ``radii`` [n] (px).

    Grows the cluster one target at a time next to a random earlier one, at a gap drawn from ``gap_range``,
    rejecting spots closer than the minimum gap to any target; so every target's nearest neighbour is
    between the minimum and maximum gap away (gap = centre distance - both radii).
    """
    low, high = gap_range
    positions = np.zeros((len(radii), 2))
    for k in range(1, len(radii)):
        for _ in range(MAX_PLACEMENT_TRIES):
            parent = rng.integers(k)
            angle = rng.uniform(0, 2 * math.pi)
            distance = radii[parent] + radii[k] + rng.uniform(low, high)
            spot = positions[parent] + distance * np.array([math.cos(angle), math.sin(angle)])
            gaps = np.hypot(*(positions[:k] - spot).T) - radii[:k] - radii[k]
            if gaps.min() >= low - 1e-9:
                positions[k] = spot
                break
        else:  # cannot happen in the plane: the last placed target always has free space around it
            raise RuntimeError("cluster formation failed")
    return positions - positions.mean(axis=0)


def steered_path(start: np.ndarray, heading: float, speed: float, frames: range, camera: np.ndarray,
                 image_size: tuple[int, int], max_turn_rad: float, rng: np.random.Generator) -> np.ndarray:
    """float64 [len(frames), 2] world positions of a point moving at constant ``speed`` with gentle turns.

    ``frames`` runs forward or backward from the frame where the point is at ``start``. The turn rate is a
    smooth random process within half of ``max_turn_rad``; when the point, looked ahead one turning radius,
    would be near the edge of the camera's view, it turns toward the view's centre at up to ``max_turn_rad``,
    so it stays in view unless the camera pans away faster than it flies.
    """
    width, height = image_size
    margin = VIEW_MARGIN_FRACTION * min(width, height)
    look_ahead = speed / max_turn_rad if max_turn_rad > 0 else 0.0
    wander = 0.5 * max_turn_rad
    position = np.array(start, dtype=np.float64)
    turn_rate = 0.0
    kicks = rng.standard_normal(len(frames)) * wander * math.sqrt(1 - TURN_RATE_CORRELATION ** 2)
    path = np.empty((len(frames), 2))
    for step, t in enumerate(frames):
        path[step] = position
        in_image = position - camera[t]
        ahead = in_image + look_ahead * np.array([math.cos(heading), math.sin(heading)])
        if (ahead[0] < margin or ahead[0] > width - margin or ahead[1] < margin or ahead[1] > height - margin):
            to_centre = math.atan2(0.5 * height - in_image[1], 0.5 * width - in_image[0])
            turn = (to_centre - heading + math.pi) % (2 * math.pi) - math.pi
            turn_rate = float(np.clip(turn, -max_turn_rad, max_turn_rad))
        else:
            turn_rate = float(np.clip(TURN_RATE_CORRELATION * turn_rate + kicks[step], -wander, wander))
        position = position + speed * np.array([math.cos(heading), math.sin(heading)])
        heading += turn_rate
    return path


def cluster_trajectories(count: int, frames: int, speed_range: list[float], max_turn_deg: float, cross: bool,
                         camera: np.ndarray, image_size: tuple[int, int],
                         rngs: list[np.random.Generator]) -> np.ndarray:
    """float64 [count, frames, 2] world positions of the cluster centroids (one generator per cluster).

    The first cluster (and every cluster when ``cross`` is off) starts at a random spot inside the view. With
    ``cross``, cluster k is put where a random earlier cluster is at a random frame of the middle half of the
    scene, heading 60-120 degrees off it, and its path is grown forward and backward from there.
    """
    width, height = image_size
    margin = VIEW_MARGIN_FRACTION * min(width, height)
    max_turn = math.radians(max_turn_deg)
    paths = np.empty((count, frames, 2))
    for k, rng in enumerate(rngs[:count]):
        speed = rng.uniform(*speed_range)
        heading = rng.uniform(0, 2 * math.pi)
        if cross and k > 0:
            other = int(rng.integers(k))
            meet = int(rng.integers(frames // 4, max(frames // 4 + 1, 3 * frames // 4)))
            start = paths[other, meet]
            if meet + 1 < frames:
                other_heading = math.atan2(*(paths[other, meet + 1] - start)[::-1])
            else:
                other_heading = heading
            heading = other_heading + rng.choice([-1, 1]) * math.radians(rng.uniform(60, 120))
            paths[k, meet:] = steered_path(start, heading, speed, range(meet, frames), camera, image_size,
                                           max_turn, rng)
            backward = steered_path(start, heading + math.pi, speed, range(meet, -1, -1), camera, image_size,
                                    max_turn, rng)
            paths[k, :meet + 1] = backward[::-1]
        else:
            start = camera[0] + [rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)]
            paths[k] = steered_path(start, heading, speed, range(frames), camera, image_size, max_turn, rng)
    return paths
