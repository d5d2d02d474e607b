"""What every frame source provides to the runner."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np

from pipeline.errors import UserError


class SourceError(UserError):
    """A source failed while streaming (corrupt frame, truncated file, changed frame size)."""


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Yielded in place of a frame that arrived but cannot be used (truncated buffer, undecodable packet).

    The stream goes on: the runner skips it, counts it per reason and logs it, and the frame keeps its index.
    """

    reason: str


class Source(Protocol):
    """Yields grey frames (H x W uint8/uint16) in order. Replay sources apply backpressure; live ones may drop.

    Live sources may also provide ``interrupt()``: the runner calls it on stop so a read blocked on a silent camera
    or a reconnect wait returns at once.
    """

    stream_id: str
    live: bool
    fps: float
    num_frames: int | None  # None for endless/live streams

    def __iter__(self) -> Iterator[np.ndarray | BadFrame]:
        ...

    def ground_truth(self) -> np.ndarray | None:
        """MOTChallenge rows [M, 6] (frame from 1, id, x, y, w, h) when the source has ground truth."""
        ...

    def close(self) -> None:
        ...


def grey_problem(image: np.ndarray) -> tuple[str, str] | None:
    """Why an array is not an H x W uint8/uint16 grey image, as (category, detail), or None when it is."""
    if image.ndim != 2:
        return "wrong_shape", f"shape {image.shape}, expected H x W grey"
    if image.dtype not in (np.uint8, np.uint16):
        return "wrong_dtype", f"pixel type {image.dtype}, expected uint8 or uint16"
    return None


def to_grey(image: np.ndarray, origin: str) -> np.ndarray:
    """Convert a decoded image to H x W grey once, at the source; keep 16-bit depth; reject other dtypes clearly."""
    import cv2

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    problem = grey_problem(image)
    if problem is not None:
        raise SourceError(f"{origin}: cannot use it as a frame ({problem[1]}); give 8- or 16-bit grey or colour")
    return np.ascontiguousarray(image)


def frame_problem(image: object, first: tuple[tuple[int, ...], np.dtype] | None) -> tuple[str, str] | None:
    """Why a frame from a running stream cannot be used, as (category, detail), or None when it can.

    ``first`` is the (shape, dtype) of the stream's first good frame: a stream keeps one size and depth, so a
    frame that differs (a camera that glitched, a decoder that returned a partial picture) is rejected.
    """
    if isinstance(image, BadFrame):
        return "corrupt", image.reason
    if not isinstance(image, np.ndarray):
        return "not_an_image", f"got {type(image).__name__}, expected a numpy image"
    problem = grey_problem(image)
    if problem is None and first is not None and (image.shape, image.dtype) != first:
        (height, width), dtype = first
        return "format_changed", (f"{image.shape[1]}x{image.shape[0]} {image.dtype}, but the stream started at "
                                f"{width}x{height} {dtype}")
    return problem
