"""The scene's clutter: a panoramic world of sky, drifting clouds and terrain, built once and sampled per frame.

The world repeats every two image widths horizontally (a panorama, so the camera can pan forever) and is
tall enough for the camera's vertical travel. Clouds live on their own layer, periodic in both directions,
that drifts with the wind over the fixed sky and terrain. Levels are 14-bit-like sensor counts.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

SKY_ZENITH_COUNTS = 3000.0  # clear sky high above the horizon is the coldest part of the scene
SKY_HORIZON_COUNTS = 5500.0  # the longer air path makes the sky warmer toward the horizon
SKY_WARMING_HEIGHT_FRACTION = 0.35  # e-folding height of that warming, as a fraction of the image height
TERRAIN_FAR_COUNTS = 6000.0  # distant terrain, seen through haze: just warmer than the sky at the horizon
TERRAIN_NEAR_COUNTS = 7000.0
CLOUD_SPECTRUM_SLOPE = 3.2  # power spectrum ~ f^-slope: smooth, billowy fractal clouds
TERRAIN_SPECTRUM_SLOPE = 3.0
TERRAIN_FORESHORTENING = 3.0  # terrain features look this many times wider than tall (seen at a grazing angle)
RIDGE_HEIGHT_FRACTION = 0.4  # hills on the horizon, as a fraction of the terrain band's height


def fractal_noise(shape: tuple[int, int], slope: float, outer_scale_px: float, rng: np.random.Generator,
                  foreshortening: float = 1.0) -> np.ndarray:
    """float32 noise of zero mean and unit std, periodic in both axes, with power spectrum ~ f^-slope.

    Spectral synthesis; ``outer_scale_px`` flattens the spectrum at scales larger than it so one huge gradient
    does not dominate; ``foreshortening`` > 1 squeezes features vertically.
    """
    rows, cols = shape
    fy = np.fft.fftfreq(rows)[:, None] / foreshortening
    fx = np.fft.rfftfreq(cols)[None, :]
    amplitude = (fx * fx + fy * fy + 1.0 / outer_scale_px ** 2) ** (-slope / 4)
    amplitude[0, 0] = 0.0
    spectrum = amplitude * (rng.standard_normal(amplitude.shape) + 1j * rng.standard_normal(amplitude.shape))
    field = np.fft.irfft2(spectrum, s=shape)
    return ((field - field.mean()) / field.std()).astype(np.float32)


def _wrap_pad(canvas: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Append copies of the first ``rows`` rows and ``cols`` columns, so periodic windows are plain slices."""
    return np.pad(canvas, [(0, rows), (0, cols)] + [(0, 0)] * (canvas.ndim - 2), mode="wrap")


def _window(canvas: np.ndarray, x: float, y: float, width: int, height: int) -> np.ndarray:
    """The width x height window whose top-left is at (x, y) in ``canvas`` (sub-pixel: bilinear, read-only)."""
    col, row = math.floor(x), math.floor(y)
    fx, fy = x - col, y - row
    if fx == 0 and fy == 0:
        return canvas[row:row + height, col:col + width]
    shift = np.float32([[1, 0, fx], [0, 1, fy]])
    return cv2.warpAffine(canvas[row:row + height + 1, col:col + width + 1], shift, (width, height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


class ClutterBackground:
    """Noise-free scene radiance (counts) seen by a camera that follows ``camera`` [frames, 2] offsets."""

    def __init__(self, width: int, height: int, camera: np.ndarray, cloud_cover: float, cloud_contrast: float,
                 cloud_drift_px_per_frame: list[float], terrain_fraction: float, terrain_contrast: float,
                 rng: np.random.Generator):
        self.width, self.height = width, height
        self.period = 2 * width
        self.cloud_drift = np.asarray(cloud_drift_px_per_frame, dtype=np.float64)
        self.camera = camera
        self.top = math.floor(camera[:, 1].min())  # world row of the ground canvas' first row
        rows = math.ceil(camera[:, 1].max()) - self.top + height + 1
        world_rows = self.top + np.arange(rows, dtype=np.float64)

        horizon = self._horizon(terrain_fraction, rng)  # world row of the horizon per world column
        sky_cover = np.clip(horizon[None, :] - world_rows[:, None], 0.0, 1.0)  # antialiased edge
        below = np.maximum(world_rows[:, None] - horizon[None, :], 0.0)
        nearness = 1.0 - np.exp(-below / max(terrain_fraction * height, 1.0))
        patches = np.tanh(3.0 * fractal_noise((rows, self.period), TERRAIN_SPECTRUM_SLOPE, 0.5 * width, rng,
                                               TERRAIN_FORESHORTENING))  # fields and woods with sharp borders
        texture = 0.75 * patches + 0.5 * fractal_noise((rows, self.period), 2.0, 0.1 * width, rng,
                                                       TERRAIN_FORESHORTENING)
        terrain = (TERRAIN_FAR_COUNTS + (TERRAIN_NEAR_COUNTS - TERRAIN_FAR_COUNTS) * nearness
                   + terrain_contrast * (0.3 + 0.7 * nearness) * texture)
        above = np.maximum(horizon.mean() - world_rows, 0.0)[:, None]
        sky = SKY_ZENITH_COUNTS + (SKY_HORIZON_COUNTS - SKY_ZENITH_COUNTS) * np.exp(
            -above / (SKY_WARMING_HEIGHT_FRACTION * height))
        ground = np.stack([sky_cover * sky + (1 - sky_cover) * terrain, sky_cover], axis=-1).astype(np.float32)
        self.ground = _wrap_pad(ground, 0, width + 1)  # channels: radiance without clouds, sky cover

        clouds = self._clouds((2 * height, self.period), cloud_cover, cloud_contrast, rng)
        self.clouds_period = clouds.shape
        self.clouds = _wrap_pad(clouds, height + 1, width + 1)

    def _horizon(self, terrain_fraction: float, rng: np.random.Generator) -> np.ndarray:
        """float64 [period] world row of the horizon per column: a level line with gentle hills on it."""
        band = terrain_fraction * self.height
        hills = fractal_noise((1, self.period), 3.0, 0.3 * self.width, rng)[0]
        hills = (hills - hills.min()) / max(float(np.ptp(hills)), 1e-6)
        return self.height - band - RIDGE_HEIGHT_FRACTION * band * (hills - hills.mean())

    @staticmethod
    def _clouds(shape: tuple[int, int], cover: float, contrast: float, rng: np.random.Generator) -> np.ndarray:
        """float32 cloud brightness (counts over clear sky): fractal patches covering ``cover`` of the sky."""
        field = fractal_noise(shape, CLOUD_SPECTRUM_SLOPE, 0.5 * shape[1], rng)
        if cover <= 0:
            return np.zeros(shape, np.float32)
        edge = np.quantile(field, 1.0 - cover)
        density = np.clip((field - edge) / 1.5, 0.0, 1.0)  # thin at the edges, saturating in thick cores
        return (contrast * density * (2 - density)).astype(np.float32)

    def render(self, index: int) -> np.ndarray:
        """float32 [height, width] radiance of frame ``index`` (a fresh array the caller may modify)."""
        x, y = self.camera[index]
        ground = _window(self.ground, x % self.period, y - self.top, self.width, self.height)
        cloud_x, cloud_y = self.camera[index] - index * self.cloud_drift  # the wind carries clouds along drift
        clouds = _window(self.clouds, cloud_x % self.clouds_period[1], cloud_y % self.clouds_period[0],
                         self.width, self.height)
        return ground[:, :, 0] + ground[:, :, 1] * clouds
