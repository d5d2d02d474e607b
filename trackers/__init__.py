"""Multi-target trackers for point-like targets behind the Tracker protocol (see trackers/base.py)."""
from __future__ import annotations

from trackers.base import Tracker
from trackers.config import TrackerConfig
from trackers.point_tracker import PointTargetTracker

__all__ = ["PointTargetTracker", "Tracker", "TrackerConfig", "create_tracker"]


def create_tracker(config: TrackerConfig | None = None, stream_id: str = "stream") -> Tracker:
    """The tracker ``config`` describes, for the stream named ``stream_id`` (named in its error messages)."""
    return PointTargetTracker(config or TrackerConfig(), stream_id=stream_id)
