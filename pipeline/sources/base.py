"""What every frame source provides to the runner."""
from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from pipeline.errors import UserError


class SourceError(UserError):
    """A source failed while streaming (corrupt frame, truncated file, changed frame size)."""


class Source(Protocol):
    """Yields grey frames (H x W uint8/uint16) in order. Replay sources apply backpressure; live ones may drop."""

    stream_id: str
    live: bool
    fps: float
    num_frames: int | None  # None for endless/live streams

    def __iter__(self) -> Iterator[np.ndarray]:
        ...

    def ground_truth(self) -> np.ndarray | None:
        """MOTChallenge rows [M, 6] (frame from 1, id, x, y, w, h) when the source has ground truth."""
        ...

    def close(self) -> None:
        ...


def to_grey(image: np.ndarray, origin: str) -> np.ndarray:
    """Convert a decoded image to H x W grey once, at the source; keep 16-bit depth; reject other dtypes clearly."""
    import cv2

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if image.ndim != 2:
        raise SourceError(f"{origin}: expected a grey or colour image, got an array of shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16):
        raise SourceError(f"{origin}: pixel type {image.dtype} is not supported; convert it to 8- or 16-bit")
    return np.ascontiguousarray(image)
