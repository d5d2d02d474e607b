"""The classical IRST detector: finds 1-5 px point targets in cloud and terrain clutter without a trained model.

Per frame:
1. Background suppression, per scale L in ``tophat_lengths_px``: a directional white top-hat, the image minus
   the largest of its grey openings by L-px lines at 0, 45, 90 and 135 degrees. A spot shorter than L in every
   direction survives, and so does each spot of a cluster with background between them (a square top-hat would
   also keep them, but keeps thin lines too); smooth clutter, edges and thin lines (power lines, cloud
   filaments) fit one of the lines and are removed.
2. Clutter level without the targets: the mirrored dark top-hat (smallest line closing minus the image) responds
   to clutter and noise like the bright one, but not to bright targets, so dense clusters do not inflate it. Its
   RMS is taken on tiles of ``noise_tile_px`` and interpolated bilinearly between tile centres, so the level
   follows non-stationary clutter (clear sky, clouds, terrain). Each scale's top-hat divided by its clutter
   level is a signal-to-noise map (SNR, in "clutter levels"); the best scale wins at every pixel. Pure sensor
   noise stays below about 7 levels; bright cloud fragments on clear sky (clutter the dark side cannot see)
   reach about 20, which is what ``peak_threshold`` trades against faint targets.
3. Targets: peaks are the 3x3 local maxima above ``peak_threshold``; blobs are the connected components
   (8-connected) above ``extent_threshold``. A blob holding several peaks (a cluster of targets 1-2 px apart)
   is split: a peak is a target of its own when the dip on the straight line to every higher peak of its blob is
   at least ``split_min_dip`` and ``split_depth`` of its height below it (two Gaussian spots of sigma 1 px, 4 px
   apart, dip by 73%; bumps on one extended object by much less); each pixel goes to its nearest remaining peak.
4. Each target is its pixels above max(``extent_threshold``, ``extent_fraction`` x its peak): centroid weighted
   by SNR minus that level, which keeps it continuous as pixels cross the level; box of the pixels' extent (at
   least 2 x 2 px) centred on the centroid; score snr / (snr + peak_threshold), 0.5 at the threshold; position
   covariance from the noise of the weights (each pixel's SNR has unit variance) plus 1/12 px^2 of pixel
   quantisation shared by its pixels.

Coordinates: pixel (row r, column c) covers [c, c+1) x [r, r+1), so its centre is (c + 0.5, r + 0.5).
The detector keeps frame-sized work buffers between calls: use one instance per thread.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from scipy.spatial import cKDTree

from engines.config import ClassicalConfig
from engines.frames import check_images
from pipeline.types import Detections

LINE_ANGLES_DEG = (0, 45, 90, 135)  # more angles catch slanted lines a little better at twice the cost
MIN_NOISE_DN = 1.0  # floor of the clutter level (one grey level): a flat, noise-free image has none
LOCAL_MAX_KERNEL = np.ones((3, 3), np.uint8)
MIN_BOX_PX = 2.0


class ClassicalIrstDetector:
    """Multi-scale top-hat detector with tile-wise robust thresholds and sub-pixel centroids (see module docs)."""

    name = "classical"

    def __init__(self, config: ClassicalConfig | None = None, *, score_threshold: float = 0.0,
                 max_detections: int = 100):
        self.config = config or ClassicalConfig()
        self.score_threshold, self.max_detections = score_threshold, max_detections
        self._lines = [line_kernels(length) for length in self.config.tophat_lengths_px]
        self._buffers: dict[str, np.ndarray] = {}

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        check_images(images, self.name)
        return [self._detect_one(np.ascontiguousarray(image)) for image in images]

    def close(self) -> None:
        self._buffers.clear()

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A work array kept between frames: fresh frame-sized arrays cost page faults that double the run time."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._buffers[name] = np.empty(shape, dtype)
        return buffer

    def snr_map(self, image: np.ndarray) -> np.ndarray:
        """float32 H x W: the best scale's bright top-hat in units of its local clutter level (see module docs).

        The array is a work buffer: the next call overwrites it.
        """
        shape, dtype = image.shape, image.dtype
        opened, closed = self._buffer("opened", shape, dtype), self._buffer("closed", shape, dtype)
        opening, closing = self._buffer("opening", shape, dtype), self._buffer("closing", shape, dtype)
        bright, dark = self._buffer("bright", shape, np.float32), self._buffer("dark", shape, np.float32)
        best = self._buffer("snr", shape, np.float32)
        for scale, lines in enumerate(self._lines):
            for index, line in enumerate(lines):
                cv2.morphologyEx(image, cv2.MORPH_OPEN, line, dst=opening if index == 0 else opened)
                cv2.morphologyEx(image, cv2.MORPH_CLOSE, line, dst=closing if index == 0 else closed)
                if index > 0:
                    cv2.max(opening, opened, dst=opening)
                    cv2.min(closing, closed, dst=closing)
            np.copyto(bright, cv2.subtract(image, opening, dst=opened))  # openings never exceed the image
            np.copyto(dark, cv2.subtract(closing, image, dst=closed))
            cv2.multiply(dark, dark, dst=dark)
            cv2.multiply(bright, inverse_tile_rms(dark, self.config.noise_tile_px, out=dark), dst=bright)
            if scale == 0:
                np.copyto(best, bright)
            else:
                cv2.max(best, bright, dst=best)
        return best

    def _detect_one(self, image: np.ndarray) -> Detections:
        config = self.config
        snr = self.snr_map(image)
        extent = cv2.compare(snr, config.extent_threshold, cv2.CMP_GT, dst=self._buffer("extent", snr.shape, np.uint8))
        labels = self._buffer("labels", snr.shape, np.int32)
        label_count, _ = cv2.connectedComponents(extent, labels=labels, connectivity=8, ltype=cv2.CV_32S)
        above = cv2.compare(snr, config.peak_threshold, cv2.CMP_GT, dst=self._buffer("above", snr.shape, np.uint8))
        peak_x, peak_y = pixels_of(above)
        local_max = cv2.dilate(snr, LOCAL_MAX_KERNEL, dst=self._buffer("dilated", snr.shape, np.float32))
        is_peak = snr[peak_y, peak_x] >= local_max[peak_y, peak_x]
        peak_x, peak_y = peak_x[is_peak], peak_y[is_peak]
        keep = prominent_peaks(snr, peak_x, peak_y, labels, config.split_min_dip, config.split_depth,
                               max(config.tophat_lengths_px))
        peak_x, peak_y = peak_x[keep], peak_y[keep]
        if len(peak_x) == 0:
            return Detections.empty()
        pixel_x, pixel_y = pixels_of(extent)
        owner, pixel_x, pixel_y = nearest_peak_in_component(peak_x, peak_y, labels, label_count, pixel_x, pixel_y)
        return self._measure(snr, peak_x, peak_y, owner, pixel_x, pixel_y)

    def _measure(self, snr: np.ndarray, peak_x: np.ndarray, peak_y: np.ndarray, owner: np.ndarray,
                 pixel_x: np.ndarray, pixel_y: np.ndarray) -> Detections:
        """Centroids, boxes, scores and covariances of the targets owning the given pixels (see module docs)."""
        config, count = self.config, len(peak_x)
        peak_snr = snr[peak_y, peak_x].astype(np.float64)
        level = np.maximum(config.extent_threshold, config.extent_fraction * peak_snr)
        weight = snr[pixel_y, pixel_x] - level[owner]
        inside = weight > 0
        owner, weight = owner[inside], weight[inside]
        dx = (pixel_x[inside] - peak_x[owner]).astype(np.float64)  # offsets from the peak: well-conditioned sums
        dy = (pixel_y[inside] - peak_y[owner]).astype(np.float64)
        area = np.bincount(owner, minlength=count)
        total = np.bincount(owner, weight, count)
        mean_dx = np.bincount(owner, weight * dx, count) / total
        mean_dy = np.bincount(owner, weight * dy, count) / total
        ex, ey = dx - mean_dx[owner], dy - mean_dy[owner]
        covariances = np.empty((count, 2, 2))
        covariances[:, 0, 0] = np.bincount(owner, ex * ex, count) / total ** 2 + 1.0 / (12.0 * area)
        covariances[:, 1, 1] = np.bincount(owner, ey * ey, count) / total ** 2 + 1.0 / (12.0 * area)
        covariances[:, 0, 1] = covariances[:, 1, 0] = np.bincount(owner, ex * ey, count) / total ** 2
        low_x, high_x, low_y, high_y = np.zeros(count), np.zeros(count), np.zeros(count), np.zeros(count)
        np.minimum.at(low_x, owner, dx)
        np.maximum.at(high_x, owner, dx)
        np.minimum.at(low_y, owner, dy)
        np.maximum.at(high_y, owner, dy)
        half_w = 0.5 * np.maximum(high_x - low_x + 1, MIN_BOX_PX)
        half_h = 0.5 * np.maximum(high_y - low_y + 1, MIN_BOX_PX)
        cx, cy = peak_x + 0.5 + mean_dx, peak_y + 0.5 + mean_dy
        scores = peak_snr / (peak_snr + config.peak_threshold)
        kept = np.flatnonzero((area >= config.min_area_px) & (area <= config.max_area_px)
                              & (scores >= self.score_threshold))
        kept = kept[np.argsort(-scores[kept], kind="stable")][: self.max_detections]
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
        return Detections(boxes[kept].astype(np.float32), scores[kept].astype(np.float32),
                          covariances=covariances[kept].astype(np.float32))


def pixels_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) int64 coordinates of the non-zero pixels of a uint8 mask, in row-major order (faster than np.nonzero)."""
    found = cv2.findNonZero(mask)
    if found is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    found = found.reshape(-1, 2).astype(np.int64)
    return found[:, 0], found[:, 1]


def line_kernels(length: int) -> list[np.ndarray]:
    """uint8 length x length structuring elements: digital lines of ``length`` pixels through the centre at
    LINE_ANGLES_DEG, point-symmetric (OpenCV does not reflect the element between an opening's two steps)."""
    centre = length // 2
    along = np.arange(-centre, centre + 1)
    kernels = []
    for angle in np.radians(LINE_ANGLES_DEG):
        step_x, step_y = np.cos(angle), -np.sin(angle)  # image rows grow downwards
        longest = max(abs(step_x), abs(step_y))  # one pixel per step along the major axis
        kernel = np.zeros((length, length), np.uint8)
        kernel[np.rint(centre + along * step_y / longest).astype(int),
               np.rint(centre + along * step_x / longest).astype(int)] = 1
        kernels.append(kernel)
    return kernels


def inverse_tile_rms(squares: np.ndarray, tile_px: int, out: np.ndarray | None = None) -> np.ndarray:
    """float32 H x W: 1 / sqrt(mean of ``squares`` per tile of about ``tile_px``), interpolated bilinearly between
    tile centres (``out`` may be ``squares`` itself); levels below MIN_NOISE_DN count as MIN_NOISE_DN."""
    height, width = squares.shape
    grid = (max(1, round(width / tile_px)), max(1, round(height / tile_px)))
    mean_square = cv2.resize(squares, grid, interpolation=cv2.INTER_AREA)
    inverse = 1.0 / np.sqrt(np.maximum(mean_square, MIN_NOISE_DN ** 2))
    return cv2.resize(inverse, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)


def prominent_peaks(snr: np.ndarray, peak_x: np.ndarray, peak_y: np.ndarray, labels: np.ndarray,
                    split_min_dip: float, split_depth: float, reach_px: int) -> np.ndarray:
    """bool mask of the peaks that are targets of their own: no higher peak of the same component within
    ``reach_px`` is joined to it by a line whose lowest point is less than max(``split_min_dip``, ``split_depth`` x
    its height) below it.

    Equal peaks (a plateau of one target) count the earlier one in row-major order as the higher one.
    """
    keep = np.ones(len(peak_x), bool)
    if len(peak_x) < 2:
        return keep
    pairs = cKDTree(np.stack([peak_x, peak_y], axis=1)).query_pairs(reach_px, output_type="ndarray")
    if len(pairs) == 0:
        return keep
    first, second = pairs[:, 0], pairs[:, 1]  # first < second
    pairs = pairs[labels[peak_y[first], peak_x[first]] == labels[peak_y[second], peak_x[second]]]
    heights = snr[peak_y, peak_x]
    second_higher = heights[pairs[:, 1]] > heights[pairs[:, 0]]
    higher = np.where(second_higher, pairs[:, 1], pairs[:, 0])
    lower = np.where(second_higher, pairs[:, 0], pairs[:, 1])
    steps = np.linspace(0.0, 1.0, 2 * reach_px + 1)
    line_x = np.rint(peak_x[higher, None] + steps * (peak_x[lower] - peak_x[higher])[:, None]).astype(np.intp)
    line_y = np.rint(peak_y[higher, None] + steps * (peak_y[lower] - peak_y[higher])[:, None]).astype(np.intp)
    dip = snr[line_y, line_x].min(axis=1)
    needed = np.maximum(split_min_dip, split_depth * heights[lower])
    keep[lower[heights[lower] - dip < needed]] = False
    return keep


def nearest_peak_in_component(peak_x: np.ndarray, peak_y: np.ndarray, labels: np.ndarray, label_count: int,
                              pixel_x: np.ndarray, pixel_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give each pixel to the nearest peak of its connected component; pixels of peakless components are dropped.

    Returns (owner peak index, pixel_x, pixel_y) of the pixels kept. Components with one peak are a table lookup;
    the others (clusters) a nearest-neighbour query in (x, y, component x a distance no two pixels reach).
    """
    peak_label = labels[peak_y, peak_x]
    peaks_in = np.bincount(peak_label, minlength=label_count)
    owner_of = np.full(label_count, -1)
    single = peaks_in[peak_label] == 1
    owner_of[peak_label[single]] = np.flatnonzero(single)
    pixel_label = labels[pixel_y, pixel_x]
    owner = owner_of[pixel_label]
    shared = peaks_in[pixel_label] > 1
    if shared.any():
        apart = float(sum(labels.shape))
        tree = cKDTree(np.stack([peak_x[~single], peak_y[~single], apart * peak_label[~single]], axis=1))
        _, nearest = tree.query(np.stack([pixel_x[shared], pixel_y[shared], apart * pixel_label[shared]], axis=1))
        owner[shared] = np.flatnonzero(~single)[nearest]
    kept = owner >= 0
    return owner[kept], pixel_x[kept], pixel_y[kept]
