"""The Detector protocol every inference backend implements, and its multi-frame extension."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from pipeline.types import Detections


class Detector(Protocol):
    """Turns a batch of grey frames (H x W, uint8 or uint16, possibly from different streams) into detections.

    Boxes come back in each frame's own pixel coordinates, whatever size the backend runs at internally.
    """

    name: str

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        ...

    def close(self) -> None:
        ...


class MultiFrameDetector(Detector, Protocol):
    """A detector whose model sees each frame with its stream's previous ones (models/export.py): the model
    engines, which keep each stream's recent frames (engines/frames.py FrameHistory).

    ``frames``: F, frames per model input (1 for a single-frame model). ``streams``: each image's stream id;
    ``restarts``: how often that stream has restarted (a live source that reconnected) before it. Without
    ``streams`` the images of a batch, and of later batches, are consecutive frames of one stream. The runner
    passes both whenever ``frames`` > 1; a detector without ``frames`` is single-frame.
    """

    frames: int

    def detect(self, images: Sequence[np.ndarray], streams: Sequence[str] | None = None,
               restarts: Sequence[int] | None = None) -> list[Detections]:
        ...
