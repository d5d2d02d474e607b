"""Text outputs written and flushed frame by frame, so a crash or a signal never loses processed frames."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.sinks.base import FrameResult


class MotTrackWriter:
    """tracks.txt in MOTChallenge format: frame (from 1), id, x, y, w, h, score, -1, -1, -1; confirmed tracks only."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "w", encoding="ascii")

    def write(self, result: FrameResult) -> None:
        tracks = result.tracks.reported()
        if len(tracks) == 0:
            return
        frame = result.frame.index + 1
        x1, y1 = tracks.boxes[:, 0], tracks.boxes[:, 1]
        w, h = tracks.boxes[:, 2] - x1, tracks.boxes[:, 3] - y1
        lines = [f"{frame},{i},{a:.2f},{b:.2f},{c:.2f},{d:.2f},{s:.4f},-1,-1,-1\n"
                 for i, a, b, c, d, s in zip(tracks.ids.tolist(), x1.tolist(), y1.tolist(), w.tolist(), h.tolist(),
                                             tracks.scores.tolist())]
        self._file.writelines(lines)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class DetectionsJsonlWriter:
    """detections.jsonl: one JSON object per frame, {"frame", "stream", "timestamp_ns", "boxes", "scores"}."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "w", encoding="ascii")

    def write(self, result: FrameResult) -> None:
        det = result.detections
        record = {
            "frame": result.frame.index + 1,
            "stream": result.frame.stream_id,
            "timestamp_ns": result.frame.timestamp_ns,
            "boxes": np.round(det.boxes.astype(np.float64), 2).tolist(),
            "scores": np.round(det.scores.astype(np.float64), 4).tolist(),
        }
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
