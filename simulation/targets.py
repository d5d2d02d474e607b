"""Point targets: pixel-integrated Gaussian spots at sub-pixel positions, and the clutter they are measured against.

Pixel (row r, column c) covers [c, c+1) x [r, r+1) in image coordinates, so its centre is (c + 0.5, r + 0.5);
ground-truth centres and detection boxes use the same coordinates.

Signal-to-clutter ratio (SCR) of a target = its peak (the most it adds to any pixel) divided by the std of the
target-free frame in the SCR_WINDOW_PX x SCR_WINDOW_PX window centred on the pixel that holds the target's
centre (moved inside the image at the borders). The std includes clutter, fixed-pattern and temporal noise.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

SCR_WINDOW_PX = 21
PSF_REACH_SIGMAS = 4.0  # a spot is drawn out to this many sigmas, where it has faded below 1/2000 of its peak


def local_background_std(image: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """float64 [N] std of ``image`` in the SCR window around each of ``centres`` [N, 2] (x, y)."""
    height, width = image.shape
    span = np.arange(SCR_WINDOW_PX)
    first = np.floor(centres).astype(np.int64) - SCR_WINDOW_PX // 2
    cols = np.clip(first[:, 0], 0, width - SCR_WINDOW_PX)[:, None] + span
    rows = np.clip(first[:, 1], 0, height - SCR_WINDOW_PX)[:, None] + span
    windows = image[rows[:, :, None], cols[:, None, :]].astype(np.float64)
    return windows.std(axis=(1, 2))


def _pixel_fractions(centres: np.ndarray, sigmas: np.ndarray, first: np.ndarray, size: int) -> np.ndarray:
    """float64 [N, size]: share of a 1-D unit Gaussian (centre, sigma) falling in pixels first .. first+size-1."""
    edges = first[:, None] + np.arange(size + 1)
    cumulative = ndtr((edges - centres[:, None]) / sigmas[:, None])
    return np.diff(cumulative, axis=1)


def add_point_targets(image: np.ndarray, centres: np.ndarray, sigmas: np.ndarray, peaks: np.ndarray,
                      gain: np.ndarray | None = None) -> None:
    """Add targets to float ``image`` in place: Gaussian spots integrated over each pixel, scaled so the
    brightest pixel of each spot gets ``peaks``; times the per-pixel ``gain`` when given (the sensor's).

    centres: [N, 2] sub-pixel (x, y); sigmas, peaks: [N]. Spots partly outside the image are clipped.
    """
    if len(centres) == 0:
        return
    height, width = image.shape
    reach = int(np.ceil(PSF_REACH_SIGMAS * sigmas.max()))
    size = 2 * reach + 1
    first = np.floor(centres).astype(np.int64) - reach
    along_x = _pixel_fractions(centres[:, 0], sigmas, first[:, 0], size)
    along_y = _pixel_fractions(centres[:, 1], sigmas, first[:, 1], size)
    along_x /= along_x.max(axis=1, keepdims=True)
    along_y *= (peaks / along_y.max(axis=1))[:, None]
    for k in range(len(centres)):
        x0, y0 = first[k]
        cols = slice(max(x0, 0), min(x0 + size, width))
        rows = slice(max(y0, 0), min(y0 + size, height))
        if cols.start >= cols.stop or rows.start >= rows.stop:
            continue
        spot = np.outer(along_y[k, rows.start - y0:rows.stop - y0], along_x[k, cols.start - x0:cols.stop - x0])
        if gain is not None:
            spot *= gain[rows, cols]
        image[rows, cols] += spot
