"""Global image shift between consecutive frames, for trackers on panning sensors.

Phase correlation: the scene background (sky, clouds, ground) dominates the spectrum, so the peak gives the
camera pan, not the small targets' own motion. Coarse to fine: the whole frame shrunk by ``downscale`` finds
the shift cheaply and over a wide range, but sub-pixel peaks on a shrunk frame are biased by up to a
(shrunk) pixel; a full-resolution crop of the same size, taken where the coarse shift says the content went,
then measures the small remainder to about 0.3 px.
"""
from __future__ import annotations

import cv2
import numpy as np


class PhaseCorrelationMotion:
    """Estimates the (dx, dy) pixel shift of the image content from the previous frame to the current one."""

    def __init__(self, downscale: int = 2, min_response: float = 0.05):
        self.downscale = downscale
        self.min_response = min_response
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (full frame, shrunk frame)
        self._window: np.ndarray | None = None

    def estimate(self, image: np.ndarray) -> np.ndarray:
        """float64 [2] shift in full-resolution pixels; zero for the first frame, after a size change, or when
        the correlation peak is too weak to trust (flat or changing scene)."""
        full = np.asarray(image, dtype=np.float32)
        height, width = full.shape
        size = (max(width // self.downscale, 1), max(height // self.downscale, 1))
        small = cv2.resize(full, size, interpolation=cv2.INTER_AREA) if self.downscale > 1 else full
        previous, self._previous = self._previous, (full, small)
        if previous is None or previous[0].shape != full.shape:
            self._window = cv2.createHanningWindow(size, cv2.CV_32F)
            return np.zeros(2)
        (dx, dy), response = self._correlate(previous[1], small)
        if not response >= self.min_response:
            return np.zeros(2)
        coarse = np.array([dx * width / size[0], dy * height / size[1]])
        return coarse if self.downscale == 1 else self._refine(previous[0], full, coarse)

    def _refine(self, previous: np.ndarray, current: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """coarse rounded to whole pixels plus the remainder measured on a central full-resolution crop."""
        crop_h, crop_w = self._window.shape
        height, width = current.shape
        x0, y0 = (width - crop_w) // 2, (height - crop_h) // 2
        step_x, step_y = np.round(coarse).astype(int)
        px, py = x0 - step_x, y0 - step_y  # where the crop's content was in the previous frame
        if not (0 <= px <= width - crop_w and 0 <= py <= height - crop_h):
            return coarse  # a pan larger than the margin around the crop: keep the coarse estimate
        (dx, dy), response = self._correlate(previous[py:py + crop_h, px:px + crop_w],
                                             current[y0:y0 + crop_h, x0:x0 + crop_w])
        if not response >= self.min_response:
            return coarse
        return np.array([step_x + dx, step_y + dy])

    def _correlate(self, previous: np.ndarray, current: np.ndarray) -> tuple[tuple[float, float], float]:
        """cv2.phaseCorrelate on mean-free, Hann-windowed copies.

        Without the mean removed, the window itself (identical in both) makes a peak at zero shift that beats
        the scene on a bright, low-contrast sky. The window is applied here rather than passed to OpenCV:
        OpenCV 5.0.0 multiplies its input arrays by the window in place.
        """
        return cv2.phaseCorrelate((previous - previous.mean()) * self._window,
                                  (current - current.mean()) * self._window)
