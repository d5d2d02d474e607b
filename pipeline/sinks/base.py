"""What flows into sinks, and the Sink protocol."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.types import Detections, Frame, Tracks


@dataclass(slots=True)
class FrameResult:
    """One processed frame: the frame, its detections and the tracker's output after it."""

    frame: Frame
    detections: Detections
    tracks: Tracks


class Sink(Protocol):
    def write(self, result: FrameResult) -> None:
        ...

    def close(self) -> None:
        """Flush and release; called once, also after an error or a signal."""
        ...
