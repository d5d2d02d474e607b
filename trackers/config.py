"""The `tracker:` config section: motion model, noise, gating, association and track lifecycle."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pipeline.schema import option, require


@dataclass
class TrackerConfig:
    kind: Literal["gnn", "jpda"] = option(
        "gnn", "association: 'gnn' (global nearest neighbour, Hungarian on gated pairs) or 'jpda' (joint "
               "probabilistic data association: soft weights for ambiguous detections; in very dense clusters its "
               "tracks pull together and its gates grow, see benchmarks/tracker_bench.py)")
    motion: Literal["cv", "ca"] = option(
        "cv", "motion model: 'cv' constant velocity (x, y, vx, vy) or 'ca' constant acceleration "
              "(adds ax, ay internally; tracks still report x, y, vx, vy)")
    process_noise: float = option(
        0.1, "variance of the white noise driving the motion model per frame: acceleration (px/frame^2)^2 for 'cv', "
             "jerk (px/frame^3)^2 for 'ca'; raise it for manoeuvring targets")
    measurement_noise_px: float = option(
        0.7, "standard deviation (px) of a detection's centre for a point target of score 1, used when the "
             "detector gives no position covariance")
    measurement_noise_size_fraction: float = option(
        0.1, "extra centre standard deviation per pixel of box width/height (larger blobs localise worse); "
             "the variance is also divided by the detection score (clipped to [0.1, 1])")
    initial_velocity_std: float = option(
        2.5, "standard deviation (px/frame) of a new track's unknown velocity; sets how far its second detection "
             "may be (about 3x this); keep it near half the fastest target speed")
    initial_acceleration_std: float = option(
        0.2, "standard deviation (px/frame^2) of a new track's unknown acceleration ('ca' only)")
    gate_probability: float = option(
        0.99, "probability that a track's own detection falls inside its gate (chi-square, 2 degrees of freedom "
              "on the Mahalanobis distance); higher gates wider")
    detection_probability: float = option(
        0.9, "probability that the detector reports a present target (JPDA weights only)")
    clutter_density: float = option(
        1e-5, "false alarms per pixel^2 per frame (JPDA weights only)")
    confirm_hits: int = option(3, "M of M-of-N confirmation: detections needed in a new track's first N frames")
    confirm_window: int = option(5, "N of M-of-N confirmation: frames a tentative track has to collect M detections")
    max_misses: int = option(
        5, "frames a confirmed track may coast undetected (reported as lost) before it is deleted")
    camera_motion: bool = option(
        False, "estimate a global image shift per frame (phase correlation) and apply it to predictions; turn on "
               "for panning sensors; needs the frame image")
    camera_motion_downscale: int = option(
        2, "the shift is found on the frame shrunk by this factor, then refined on a full-resolution crop of the "
           "same size (larger: faster, less reliable on low-contrast sky)")
    camera_motion_min_response: float = option(
        0.05, "phase-correlation peak strength (0-1) below which the shift is not trusted and taken as zero")

    def __post_init__(self):
        for key in ("process_noise", "measurement_noise_px", "initial_velocity_std", "initial_acceleration_std"):
            value = getattr(self, key)
            require(math.isfinite(value) and value > 0, key, f"must be a positive number, got {value!r}")
        value = self.measurement_noise_size_fraction
        require(math.isfinite(value) and value >= 0, "measurement_noise_size_fraction", f"must be >= 0, got {value!r}")
        for key in ("gate_probability", "detection_probability"):
            value = getattr(self, key)
            require(0 < value < 1, key, f"must be a probability strictly between 0 and 1, got {value!r}")
        require(math.isfinite(self.clutter_density) and self.clutter_density > 0, "clutter_density",
                f"must be a positive density (false alarms per pixel^2), got {self.clutter_density!r}")
        require(self.confirm_hits >= 1, "confirm_hits", f"must be at least 1, got {self.confirm_hits!r}")
        require(self.confirm_window >= self.confirm_hits, "confirm_window",
                f"must be >= confirm_hits ({self.confirm_hits}), got {self.confirm_window!r}")
        require(self.confirm_window <= 63, "confirm_window", f"must be at most 63 frames, got {self.confirm_window!r}")
        require(self.max_misses >= 0, "max_misses", f"must be >= 0, got {self.max_misses!r}")
        require(self.camera_motion_downscale >= 1, "camera_motion_downscale",
                f"must be at least 1, got {self.camera_motion_downscale!r}")
        require(0 <= self.camera_motion_min_response <= 1, "camera_motion_min_response",
                f"must be between 0 and 1, got {self.camera_motion_min_response!r}")
