"""The synthetic scene's config section; its defaults are the demo scene the pipeline runs with no arguments."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pipeline.schema import option, require
from simulation.targets import SCR_WINDOW_PX

MAX_CAMERA_TILT_HEIGHTS = 2.0  # vertical camera travel the scene supports, in image heights (bounds its memory)


@dataclass
class SyntheticSceneConfig:
    seed: int = option(0, "random seed: the same seed and options give the same frames and ground truth")
    width: int = option(640, "frame width (px)")
    height: int = option(512, "frame height (px)")
    frames: int = option(300, "number of frames")
    dtype: Literal["uint16", "uint8"] = option(
        "uint16", "output pixels: 'uint16' = 14-bit-like counts 0..16383 (sensor units), 'uint8' = the scene's "
                  "background range mapped linearly to 0..255 (fixed per scene, no frame-to-frame gain changes)")
    clusters: int = option(3, "number of target clusters (0: background only)")
    targets_per_cluster: list[int] = option([8, 12], "[min, max] targets in one cluster (drawn per cluster)")
    target_gap_px: list[float] = option(
        [1.0, 2.0], "[min, max] gap (px) between neighbouring targets of a cluster: centre distance minus the two "
                    "half box sizes; every target's nearest cluster neighbour is this far away")
    scr_range: list[float] = option(
        [2.0, 10.0], "[min, max] signal-to-clutter ratio per target: brightest target pixel above the background "
                     f"over the std of the target-free frame in the {SCR_WINDOW_PX}x{SCR_WINDOW_PX} px window "
                     "around the target")
    psf_sigma_range: list[float] = option(
        [0.5, 1.5], "[min, max] Gaussian point-spread sigma (px) per target; visible extent about 1-5 px")
    speed_range: list[float] = option([0.5, 3.0], "[min, max] cluster speed (px/frame), constant per cluster")
    max_turn_deg_per_frame: float = option(
        2.0, "largest heading change (deg/frame); clusters wander with gentle random turns well below it and use "
             "all of it only to turn back into view")
    clusters_cross: bool = option(
        True, "every cluster after the first is placed to pass through an earlier cluster mid-scene")
    pan_px_per_frame: list[float] = option(
        [0.0, 0.0], "[x, y] constant camera pan (px/frame): background and targets move the other way in the image")
    pan_random_walk_px: float = option(
        0.0, "std (px/frame) of a smooth random pan speed added to pan_px_per_frame (0: none)")
    cloud_cover: float = option(0.45, "fraction of the sky covered by clouds (0..1)")
    cloud_contrast: float = option(1800.0, "brightness of thick clouds above clear sky (counts)")
    cloud_drift_px_per_frame: list[float] = option([0.05, 0.0], "[x, y] wind drift of the clouds (px/frame)")
    terrain_fraction: float = option(0.22, "fraction of the image height below the horizon (0: sky only)")
    terrain_contrast: float = option(700.0, "about the std of the terrain texture close to the camera (counts)")
    temporal_noise_std: float = option(20.0, "std of the white sensor noise, new every frame (counts)")
    column_noise_std: float = option(8.0, "std of the fixed per-column offsets (counts)")
    pixel_offset_std: float = option(6.0, "std of the fixed per-pixel offsets (counts)")
    pixel_gain_std: float = option(0.01, "std of the fixed per-pixel gain around 1")

    def __post_init__(self):
        require(0 <= self.seed < 2**63, "seed", f"must be a non-negative integer, got {self.seed}")
        require(64 <= self.width <= 8192, "width", f"must be 64..8192 px, got {self.width}")
        require(64 <= self.height <= 8192, "height", f"must be 64..8192 px, got {self.height}")
        require(self.frames >= 1, "frames", f"must be at least 1, got {self.frames}")
        require(0 <= self.clusters <= 50, "clusters", f"must be 0..50, got {self.clusters}")
        _require_range(self.targets_per_cluster, "targets_per_cluster", 1, 200)
        _require_range(self.target_gap_px, "target_gap_px", 0.0, 100.0)
        _require_range(self.scr_range, "scr_range", 1e-3, 1e3)
        _require_range(self.psf_sigma_range, "psf_sigma_range", 0.2, 5.0)
        _require_range(self.speed_range, "speed_range", 0.0, 50.0)
        require(0 <= self.max_turn_deg_per_frame <= 45, "max_turn_deg_per_frame",
                f"must be 0..45 degrees per frame, got {self.max_turn_deg_per_frame}")
        _require_vector(self.pan_px_per_frame, "pan_px_per_frame", 50.0)
        tilt = abs(self.pan_px_per_frame[1]) * self.frames
        require(tilt <= MAX_CAMERA_TILT_HEIGHTS * self.height, "pan_px_per_frame",
                f"the camera would tilt {tilt:g} px over the scene, more than {MAX_CAMERA_TILT_HEIGHTS:g} image "
                f"heights; lower the y pan or the number of frames")
        require(0 <= self.pan_random_walk_px <= 10, "pan_random_walk_px",
                f"must be 0..10 px/frame, got {self.pan_random_walk_px}")
        _require_vector(self.cloud_drift_px_per_frame, "cloud_drift_px_per_frame", 50.0)
        require(0 <= self.cloud_cover <= 1, "cloud_cover", f"must be 0..1, got {self.cloud_cover}")
        require(0 <= self.terrain_fraction <= 0.9, "terrain_fraction", f"must be 0..0.9, got {self.terrain_fraction}")
        for key in ("cloud_contrast", "terrain_contrast", "temporal_noise_std", "column_noise_std",
                    "pixel_offset_std"):
            value = getattr(self, key)
            require(math.isfinite(value) and 0 <= value <= 4000, key, f"must be 0..4000 counts, got {value}")
        require(0 <= self.pixel_gain_std <= 0.2, "pixel_gain_std", f"must be 0..0.2, got {self.pixel_gain_std}")


def _require_range(values: list, key: str, lowest: float, highest: float) -> None:
    """A [min, max] pair inside [lowest, highest] with min <= max."""
    require(len(values) == 2, key, f"must be a [min, max] pair, got {values}")
    low, high = values
    require(math.isfinite(low) and math.isfinite(high) and lowest <= low <= high <= highest, key,
            f"must satisfy {lowest:g} <= min <= max <= {highest:g}, got {values}")


def _require_vector(values: list[float], key: str, largest: float) -> None:
    """An [x, y] pair of finite numbers no larger than ``largest`` in magnitude."""
    require(len(values) == 2, key, f"must be an [x, y] pair, got {values}")
    require(all(math.isfinite(v) and abs(v) <= largest for v in values), key,
            f"each component must be within +-{largest:g}, got {values}")
