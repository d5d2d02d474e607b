"""A deterministic synthetic infrared scene with ground truth: the pipeline's default source and a benchmark input.

Frame = sensor(clutter background + clustered point targets): the background and every fixed pattern are built
once per scene; each frame only samples the background at the camera's position, adds its own temporal noise
(seeded by the frame index, so frames can be read in any order) and draws the targets at their sub-pixel
positions. Coordinates, the SCR definition and the target drawing are described in ``simulation.targets``.
"""
from __future__ import annotations

import operator

import numpy as np
from scipy.special import ndtri

from pipeline.errors import UserError
from pipeline.schema import require
from simulation.background import ClutterBackground
from simulation.config import MAX_CAMERA_TILT_HEIGHTS, SyntheticSceneConfig
from simulation.motion import camera_path, cluster_formation, cluster_trajectories
from simulation.targets import PSF_REACH_SIGMAS, add_point_targets, local_background_std

FULL_SCALE_COUNTS = 16383  # 14-bit sensor range of the uint16 output
BOX_DIAMETER_SIGMAS = 3.0  # ground-truth box side: where a spot has faded to about a third of its peak
MIN_BOX_PX = 2.0
UINT8_RANGE_PERCENTILES = (0.1, 99.9)  # of the first noise-free frame, mapped to the uint8 range ...
UINT8_HEADROOM = 0.25  # ... with this fraction of that range kept free above it for bright targets

# Independent random streams, so that changing one option (say, the number of clusters) leaves the rest as it was.
CAMERA_STREAM, BACKGROUND_STREAM, FIXED_PATTERN_STREAM, CLUSTER_STREAM, TEMPORAL_NOISE_STREAM = range(5)


def _gaussian_table() -> np.ndarray:
    """float32 [65536] standard normal quantiles: 16-bit random integers index it, which is about 4x faster than
    numpy's float32 standard_normal; tails are cut at 4.3 sigma, the table is rescaled to unit std."""
    table = ndtri((np.arange(65536) + 0.5) / 65536)
    return (table / table.std()).astype(np.float32)


class SyntheticScene:
    """``len(scene)`` frames of ``config.height x config.width`` in ``config.dtype``, and their ground truth.

    Attributes: ``camera_offsets`` float64 [frames, 2] world position of each frame's top-left corner (the pan);
    ``target_cluster`` int64 [targets]: the cluster of the target with ground-truth id ``k + 1`` at index ``k``.
    """

    def __init__(self, config: SyntheticSceneConfig):
        self.config = config
        width, height = config.width, config.height
        self.camera_offsets = camera_path(config.frames, config.pan_px_per_frame, config.pan_random_walk_px,
                                          self._rng(CAMERA_STREAM))
        tilt = float(np.ptp(self.camera_offsets[:, 1]))
        require(tilt <= MAX_CAMERA_TILT_HEIGHTS * height, "pan_random_walk_px",
                f"the random pan tilts the camera {tilt:.0f} px over the scene, more than "
                f"{MAX_CAMERA_TILT_HEIGHTS:g} image heights; lower it or the number of frames")
        self._background = ClutterBackground(
            width, height, self.camera_offsets, config.cloud_cover, config.cloud_contrast,
            config.cloud_drift_px_per_frame, config.terrain_fraction, config.terrain_contrast,
            self._rng(BACKGROUND_STREAM))
        self._init_fixed_pattern()
        self._init_targets()
        self._noise_table = _gaussian_table() * np.float32(config.temporal_noise_std)
        noise_free = self._background.render(0)
        low, high = np.percentile(noise_free, UINT8_RANGE_PERCENTILES)
        sensor_noise = np.sqrt(config.temporal_noise_std ** 2 + config.column_noise_std ** 2
                               + config.pixel_offset_std ** 2)
        self._uint8_low = low - 4 * sensor_noise
        self._uint8_scale = 255.0 / ((high - self._uint8_low) * (1 + UINT8_HEADROOM) + 1e-6)

    def _rng(self, *stream: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=stream))

    def _init_fixed_pattern(self) -> None:
        """Per-pixel gain and offset plus per-column offsets: the sensor's non-uniformity, the same every frame."""
        config, rng = self.config, self._rng(FIXED_PATTERN_STREAM)
        shape = (config.height, config.width)
        self._gain = (1.0 + config.pixel_gain_std * rng.standard_normal(shape)).astype(np.float32)
        self._offset = (config.pixel_offset_std * rng.standard_normal(shape)
                        + config.column_noise_std * rng.standard_normal(config.width)).astype(np.float32)

    def _init_targets(self) -> None:
        """Draw each cluster's targets (size, SCR, place in the formation) and the clusters' trajectories."""
        config = self.config
        rngs = [self._rng(CLUSTER_STREAM, k) for k in range(config.clusters)]
        sigmas, scrs, offsets, members = [], [], [], []
        for k, rng in enumerate(rngs):
            count = int(rng.integers(config.targets_per_cluster[0], config.targets_per_cluster[1] + 1))
            sigma = rng.uniform(*config.psf_sigma_range, size=count)
            scrs.append(rng.uniform(*config.scr_range, size=count))
            offsets.append(cluster_formation(0.5 * self._box_size(sigma), config.target_gap_px, rng))
            sigmas.append(sigma)
            members.append(np.full(count, k))
        self._sigmas = np.concatenate(sigmas) if sigmas else np.zeros(0)
        self._scrs = np.concatenate(scrs) if scrs else np.zeros(0)
        self._offsets = np.concatenate(offsets) if offsets else np.zeros((0, 2))
        self.target_cluster = np.concatenate(members).astype(np.int64) if members else np.zeros(0, np.int64)
        self._cluster_paths = cluster_trajectories(
            config.clusters, config.frames, config.speed_range, config.max_turn_deg_per_frame,
            config.clusters_cross, self.camera_offsets, (config.width, config.height), rngs)

    @staticmethod
    def _box_size(sigmas: np.ndarray) -> np.ndarray:
        return np.maximum(BOX_DIAMETER_SIGMAS * sigmas, MIN_BOX_PX)

    def __len__(self) -> int:
        return self.config.frames

    def target_centres(self, index: int) -> np.ndarray:
        """float64 [targets, 2] true (x, y) image positions in frame ``index``, in or out of view; row k is id k+1."""
        return (self._cluster_paths[self.target_cluster, index] + self._offsets
                - self.camera_offsets[index])

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based): height x width uint16 counts (or uint8), the same whenever it is asked for."""
        index = self._check_index(index)
        config = self.config
        image = self._background.render(index)
        image *= self._gain
        image += self._offset
        if config.temporal_noise_std > 0:
            draws = self._rng(TEMPORAL_NOISE_STREAM, index).integers(
                0, 65536, size=image.shape, dtype=np.uint16)
            image += np.take(self._noise_table, draws)
        centres = self.target_centres(index)
        reach = PSF_REACH_SIGMAS * self._sigmas
        drawn = ((centres[:, 0] > -reach) & (centres[:, 0] < config.width + reach)
                 & (centres[:, 1] > -reach) & (centres[:, 1] < config.height + reach))
        peaks = self._scrs[drawn] * local_background_std(image, centres[drawn])
        add_point_targets(image, centres[drawn], self._sigmas[drawn], peaks, self._gain)
        return self._quantise(image)

    def _check_index(self, index: int) -> int:
        try:
            index = operator.index(index)
        except TypeError:
            raise UserError(f"synthetic scene frame index must be an integer, got {index!r}") from None
        if not 0 <= index < self.config.frames:
            raise UserError(f"synthetic scene frame index {index} is out of range 0..{self.config.frames - 1} "
                            f"(the scene has {self.config.frames} frames; see its 'frames' option)")
        return index

    def _quantise(self, image: np.ndarray) -> np.ndarray:
        """Round float counts to the output dtype, saturating like a real sensor (in place on ``image``)."""
        if self.config.dtype == "uint8":
            image -= self._uint8_low
            image *= self._uint8_scale
            top, dtype = 255, np.uint8
        else:
            top, dtype = FULL_SCALE_COUNTS, np.uint16
        np.clip(image, 0, top, out=image)
        image += 0.5
        return image.astype(dtype)

    def ground_truth(self) -> np.ndarray:
        """float64 [M, 6] MOTChallenge rows (frame from 1, id from 1, left, top, w, h), sorted by frame then id.

        One row per target and frame whose true centre lies inside the image; the square box of side
        max(3 sigma, 2 px) is centred on the true centre (left = x - w/2).
        """
        config = self.config
        count = len(self._sigmas)
        centres = np.stack([self.target_centres(t) for t in range(config.frames)]).reshape(config.frames, count, 2)
        inside = ((centres[..., 0] >= 0) & (centres[..., 0] < config.width)
                  & (centres[..., 1] >= 0) & (centres[..., 1] < config.height))
        frame_of, target_of = np.nonzero(inside)
        size = np.broadcast_to(self._box_size(self._sigmas), (config.frames, count))[inside]
        xy = centres[inside]
        return np.column_stack([frame_of + 1.0, target_of + 1.0, xy[:, 0] - 0.5 * size, xy[:, 1] - 0.5 * size,
                                size, size])
