"""The Detector protocol every inference backend implements."""
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
