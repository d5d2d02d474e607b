"""The Tracker protocol: one instance per stream, fed every frame in order."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from pipeline.types import Detections, Tracks


class Tracker(Protocol):
    def update(self, frame_index: int, detections: Detections, image: np.ndarray | None = None) -> Tracks:
        """Advance to ``frame_index`` (0-based, strictly increasing) with that frame's detections.

        ``image`` is the frame itself, for trackers that estimate camera motion; others ignore it.
        Returns every live track after the update; sinks report the non-tentative ones.
        """
        ...
