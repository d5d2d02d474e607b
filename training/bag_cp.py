"""BAG-CP (background-aware Gaussian copy-paste) as the reference's ``deepir.SkyCopyPaste`` does it, step by step.

Applied to a destination sample after resize and flip, with the targets of one other (resized, flipped) source
sample as the "target library". See reference/bafenet-reference.md section 3; each step below names its number there.
Every random draw comes from the numpy Generator passed in, so a seed fixes the result.

Two reference quirks are kept on purpose, because the reference trained with them:
- the 1-px spacing check slices ``occupied[row - 1 : ...]``; at row 0 (or column 0) the start -1 wraps and the slice
  is empty, so a paste touching the top or left border skips the spacing check;
- after ~102 failed draws the fallback placement uses its last draw even when that is not sky or touches a target.

``variant="paper"`` swaps only the cluster layout for the paper's description (1-3 windows of 20x20 px, each holding
8-12 targets, drawn with replacement when the source has fewer boxes); sizes, placement and blending are unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

from training.densesirst import SKY, Sample

LARGE_SIDE = 10  # a source box this wide or tall (truncated coordinates) is shrunk ...
LARGE_PASTE = 7  # ... to a 7x7 paste
WINDOW_SHRINK = 3  # a cluster window that cannot be placed shrinks by 3 px ...
MIN_WINDOW = LARGE_PASTE  # ... and a window must stay larger than the biggest paste to count as found
WINDOW_DRAWS = 102  # draws per window search, per in-window placement and per fallback placement
BLEND_COUNT_LEVEL = 25  # 255 * lambda * G above this counts a pasted pixel for the overlap average


@dataclass(frozen=True)
class PastePlan:
    """Source boxes to paste, in order, and the positions in that order where a new cluster window starts."""

    source_indices: np.ndarray
    window_starts: frozenset[int]


@dataclass(frozen=True)
class SkyCopyPaste:
    """``SkyCopyPaste(max_num_pasted=100, bbox_occluded_thr=10, mask_occluded_thr=300, selected=True,
    paste_by_box=True)`` of the reference. Call with (destination, source, rng); both must have the same image size,
    and the destination needs its sky and target masks."""

    variant: Literal["reference", "paper"] = "reference"
    max_num_pasted: int = 100
    bbox_occluded_thr: float = 10.0
    mask_occluded_thr: int = 300

    def __post_init__(self):
        if self.variant not in ("reference", "paper"):
            raise ValueError(f"variant must be 'reference' or 'paper', got {self.variant!r}")

    @property
    def window_side(self) -> int:
        return 25 if self.variant == "reference" else 20

    @property
    def window_shrinks(self) -> int:
        """Shrinks tried after a failed window search: the reference tries 25, 22, ..., 7; the paper 20 only."""
        return 6 if self.variant == "reference" else 0

    def plan(self, num_source_boxes: int, rng: np.random.Generator) -> PastePlan:
        """Step 1: pick the source boxes and group them into cluster windows."""
        n = num_source_boxes
        if self.variant == "reference":
            count = int(rng.integers(0, min(n + 1, self.max_num_pasted)))  # uniform on {0, ..., min(n, 99)}
            indices = rng.choice(n, size=count, replace=False)
            return PastePlan(indices, frozenset(range(0, count, 5)))
        if n == 0:
            return PastePlan(np.zeros(0, np.int64), frozenset())
        per_window = rng.integers(8, 13, size=int(rng.integers(1, 4)))
        total = int(per_window.sum())
        indices = rng.choice(n, size=total, replace=total > n)
        return PastePlan(indices, frozenset(np.concatenate([[0], np.cumsum(per_window)[:-1]]).tolist()))

    def __call__(self, dst: Sample, src: Sample, rng: np.random.Generator) -> Sample:
        if dst.sky_mask is None or dst.target_mask is None:
            raise ValueError("BAG-CP needs the destination's sky and target masks: build DenseSirst with masks")
        if src.image.shape != dst.image.shape:
            raise ValueError(f"BAG-CP source {src.image.shape} and destination {dst.image.shape} must have one size "
                             "(resize both first)")
        plan = self.plan(len(src.boxes), rng)
        if len(plan.source_indices) == 0:
            return dst
        sky = dst.sky_mask == SKY
        if not sky.any():
            return dst  # step 2: nothing to paste onto
        source_boxes = src.boxes[plan.source_indices]
        sizes = [_paste_size(box) for box in source_boxes]
        occupied = dst.target_mask.astype(bool)  # step 2: pasted targets keep 1 px away from these, then each other
        rects = _Placer(sky, occupied, self.window_side, self.window_shrinks, rng).place(sizes, plan.window_starts)
        image, pasted = _blend(dst.image, src.image, source_boxes, rects, rng)
        kept_boxes, kept = self._requantised_dst_boxes(dst.boxes, pasted)
        boxes = np.concatenate([kept_boxes[kept], _rect_boxes(rects, dst.image.shape)]).astype(np.float32)
        difficult = np.concatenate([dst.difficult[kept], src.difficult[plan.source_indices]])
        return replace(dst, image=image, boxes=boxes, difficult=difficult,
                       target_mask=occupied.astype(np.uint8))  # step 7: the sky mask is not modified

    def _requantised_dst_boxes(self, boxes: np.ndarray, pasted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step 7: destination boxes re-derived from int-truncated box masks minus the pasted pixels, and which to keep.

        Kept when every coordinate moved by <= bbox_occluded_thr or more than mask_occluded_thr pixels remain.
        """
        height, width = pasted.shape
        rows_all, cols_all = np.arange(height), np.arange(width)
        new_boxes = np.zeros((len(boxes), 4), np.float32)
        areas = np.zeros(len(boxes), np.int64)
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            rows, cols = rows_all[int(y1):int(y2)], cols_all[int(x1):int(x2)]  # Python slicing, as the mask fill
            visible = ~pasted[np.ix_(rows, cols)]
            areas[i] = visible.sum()
            if areas[i]:
                visible_rows, visible_cols = rows[visible.any(axis=1)], cols[visible.any(axis=0)]
                new_boxes[i] = visible_cols[0], visible_rows[0], visible_cols[-1] + 1, visible_rows[-1] + 1
        moved_little = (np.abs(new_boxes - boxes) <= self.bbox_occluded_thr).all(axis=1)
        return new_boxes, moved_little | (areas > self.mask_occluded_thr)


def _paste_size(box: np.ndarray) -> tuple[int, int]:
    """Step 3: (height, width) of the paste from truncated source coordinates; 7x7 when either side is >= 10.

    A box whose truncated crop is empty pastes nothing and gets a [0, 0, 0, 0] box, as the reference does for small
    ones (it crashes on a large one, e.g. 40x0.6 px); (0, 0) keeps such a box from needing a window wider than 25.
    """
    x1, y1, x2, y2 = (int(v) for v in box)
    height, width = y2 - y1, x2 - x1
    if height <= 0 or width <= 0:
        return 0, 0
    return (LARGE_PASTE, LARGE_PASTE) if width >= LARGE_SIDE or height >= LARGE_SIDE else (height, width)


class _Placer:
    """Steps 4-5: cluster windows on sky and paste positions inside them, marking each paste as occupied."""

    def __init__(self, sky: np.ndarray, occupied: np.ndarray, window_side: int, window_shrinks: int,
                 rng: np.random.Generator):
        self.sky, self.occupied, self.rng = sky, occupied, rng
        self.initial_side, self.window_shrinks = window_side, window_shrinks
        self.sky_rows, self.sky_cols = np.nonzero(sky)
        self.height, self.width = sky.shape

    def place(self, sizes: list[tuple[int, int]], window_starts: frozenset[int]) -> list[tuple[int, int, int, int]]:
        """(row, col, height, width) of each paste; the side found for one window carries over to the next."""
        side, window, rects = self.initial_side, None, []
        for i, (height, width) in enumerate(sizes):
            if i in window_starts:
                window, side = self._find_window(side)
            if window is None:
                row, col = self._fallback_position(height, width)
            else:
                row, col = self._position_in_window(window, side, height, width)
            self.occupied[row:row + height, col:col + width] = True
            rects.append((row, col, height, width))
        return rects

    def _find_window(self, side: int) -> tuple[tuple[int, int] | None, int]:
        """A side x side all-sky, target-free window, shrinking by 3 after each failed search; on final failure
        return None with the side reset to its initial value."""
        for attempt in range(self.window_shrinks + 1):
            found = None
            for _ in range(WINDOW_DRAWS):
                row, col = self._random_sky_pixel()
                row, col = min(self.height - side, row), min(self.width - side, col)
                if self.sky[row:row + side, col:col + side].all() and \
                        not self.occupied[row:row + side, col:col + side].any():
                    found = (row, col)
                    break
            if found is not None and side > MIN_WINDOW:
                return found, side
            if attempt < self.window_shrinks:
                side -= WINDOW_SHRINK
        return None, self.initial_side

    def _position_in_window(self, window: tuple[int, int], side: int, height: int, width: int) -> tuple[int, int]:
        top, left = window
        for _ in range(WINDOW_DRAWS):
            row = int(self.rng.integers(top, top + side - height))
            col = int(self.rng.integers(left, left + side - width))
            if self._fits(row, col, height, width):
                return row, col
        return self._fallback_position(height, width)

    def _fallback_position(self, height: int, width: int) -> tuple[int, int]:
        """A random sky pixel as top-left; after the last draw it is used even if it does not fit (reference)."""
        for _ in range(WINDOW_DRAWS):
            row, col = self._random_sky_pixel()
            if self._fits(row, col, height, width):
                break
        return row, col

    def _fits(self, row: int, col: int, height: int, width: int) -> bool:
        """All sky (within the image) and no occupied pixel in the rectangle grown by 1 px (see the -1 quirk)."""
        return bool(self.sky[row:row + height, col:col + width].all()) and \
            not self.occupied[row - 1:row + height + 1, col - 1:col + width + 1].any()

    def _random_sky_pixel(self) -> tuple[int, int]:
        index = int(self.rng.integers(0, len(self.sky_rows)))
        return int(self.sky_rows[index]), int(self.sky_cols[index])


def _clipped(rect: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(row0, col0, row1, col1) of a paste rectangle cut to the image, as the reference's mask slicing does."""
    row, col, height, width = rect
    return row, col, min(row + height, shape[0]), min(col + width, shape[1])


def _rect_boxes(rects: list[tuple[int, int, int, int]], shape: tuple[int, int]) -> np.ndarray:
    """Step 7: each paste's box [col0, row0, col1, row1] from its mask; an empty paste gives [0, 0, 0, 0]."""
    boxes = np.zeros((len(rects), 4), np.float32)
    for i, rect in enumerate(rects):
        row0, col0, row1, col1 = _clipped(rect, shape)
        if row1 > row0 and col1 > col0:
            boxes[i] = col0, row0, col1, row1
    return boxes


def _blend(dst_image: np.ndarray, src_image: np.ndarray, source_boxes: np.ndarray,
           rects: list[tuple[int, int, int, int]], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Step 6: new pixel = dst + lambda * G * src patch, capped at 255, averaged where strong pastes overlap.

    Returns the new uint8 image and the bool mask of pasted pixels (the only pixels that change).
    """
    result = src_image.astype(np.float32)  # the reference starts from the source image; only pasted pixels are used
    counts = np.zeros(dst_image.shape, np.float64)
    pasted = np.zeros(dst_image.shape, bool)
    for box, rect in zip(source_boxes, rects):
        row0, col0, row1, col1 = _clipped(rect, dst_image.shape)
        if row1 <= row0 or col1 <= col0:
            continue  # an empty paste: no box pixels, no random draws
        height, width = row1 - row0, col1 - col0
        x1, y1, x2, y2 = (int(v) for v in box)
        patch = src_image[y1:y2, x1:x2]
        if (y2 - y1) >= LARGE_SIDE or (x2 - x1) >= LARGE_SIDE:
            patch = cv2.resize(patch, (LARGE_PASTE, LARGE_PASTE), interpolation=cv2.INTER_LINEAR)
        weight = rng.uniform(0.5, 1.0)
        gaussian = _gaussian_patch(height, width, rng)
        value = dst_image[row0:row1, col0:col1].astype(np.float64) + \
            patch[:height, :width].astype(np.float64) * weight * gaussian
        # Python's min(255, v) as in the reference: NaN (a 1x1 paste) compares false and becomes 255.
        result[row0:row1, col0:col1] = np.where(value < 255, value, 255.0)
        with np.errstate(invalid="ignore"):
            counts[row0:row1, col0:col1] += 255.0 * weight * gaussian > BLEND_COUNT_LEVEL
        pasted[row0:row1, col0:col1] = True
    overlapping = counts > 0
    result[overlapping] /= counts[overlapping]
    return np.where(pasted, result.astype(np.uint8), dst_image), pasted


def _gaussian_patch(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Rotated anisotropic Gaussian on a [-1, 1]^2 grid, min-max normalised to [0, 1] (NaN for a 1x1 patch)."""
    sigma_x, sigma_y = rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.6)
    mu_x, mu_y = -rng.uniform(0.0, 0.2), -rng.uniform(0.0, 0.2)
    theta = np.radians(int(rng.integers(-90, 90)))
    grid_x, grid_y = np.meshgrid(np.linspace(-1, 1, width), np.linspace(-1, 1, height))
    dx, dy = grid_x - mu_x, grid_y - mu_y
    u = np.cos(theta) * dx - np.sin(theta) * dy
    v = np.sin(theta) * dx + np.cos(theta) * dy
    gaussian = np.exp(-(u ** 2 / (2 * sigma_x ** 2) + v ** 2 / (2 * sigma_y ** 2)))
    with np.errstate(invalid="ignore"):
        gaussian -= gaussian.min()
        return gaussian / gaussian.max()
