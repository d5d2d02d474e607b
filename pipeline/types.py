"""The data contracts of DESIGN.md: Frame, Detections, Tracks. Frames are counted from 0 in code, from 1 in files."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


@dataclass(slots=True)
class Frame:
    """One grey image from one stream. ``image`` is H x W uint8 or uint16 (colour was converted once, at the source).

    ``restarts``: how often the stream restarted (a live source that reconnected) before this frame; frames with
    the same count are one continuous recording (multi-frame detectors stack only those, engines/base.py).
    """

    stream_id: str
    index: int
    timestamp_ns: int
    image: np.ndarray
    timings_ns: dict[str, int] = field(default_factory=dict)  # stage name -> monotonic ns when it finished
    restarts: int = 0


@dataclass(slots=True)
class Detections:
    """Detections of one frame in source-image pixels.

    boxes: float32 [N, 4] x1, y1, x2, y2; scores: float32 [N]; class_ids: int32 [N] or None;
    covariances: float32 [N, 2, 2] position covariance (px^2) or None when the detector gives none.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray | None = None
    covariances: np.ndarray | None = None

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def centers(self) -> np.ndarray:
        """float32 [N, 2] box centres (x, y)."""
        return 0.5 * (self.boxes[:, :2] + self.boxes[:, 2:])


class TrackStatus(IntEnum):
    TENTATIVE = 0
    CONFIRMED = 1
    LOST = 2  # coasting: not detected this frame, kept alive by prediction


@dataclass(slots=True)
class Tracks:
    """All tracks a tracker reports after one frame, as arrays (one row per track) so sinks stay vectorised.

    ids: int64 [T] (unique per stream, never reused); states: float64 [T, 4] (x, y, vx, vy) in pixels and
    pixels/frame; boxes: float32 [T, 4] x1, y1, x2, y2; scores: float32 [T]; ages, hits, misses: int32 [T];
    status: uint8 [T] of TrackStatus; covariances: float64 [T, 4, 4] or None.
    """

    ids: np.ndarray
    states: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    ages: np.ndarray
    hits: np.ndarray
    misses: np.ndarray
    status: np.ndarray
    covariances: np.ndarray | None = None

    @staticmethod
    def empty() -> "Tracks":
        return Tracks(
            np.zeros((0,), np.int64), np.zeros((0, 4)), np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
            np.zeros((0,), np.int32), np.zeros((0,), np.int32), np.zeros((0,), np.int32), np.zeros((0,), np.uint8),
        )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def select(self, mask: np.ndarray) -> "Tracks":
        return Tracks(
            self.ids[mask], self.states[mask], self.boxes[mask], self.scores[mask], self.ages[mask],
            self.hits[mask], self.misses[mask], self.status[mask],
            None if self.covariances is None else self.covariances[mask],
        )

    def reported(self) -> "Tracks":
        """Tracks written to outputs: confirmed ones, whether detected this frame or coasting."""
        return self.select(self.status != TrackStatus.TENTATIVE)
