"""Recorded video files decoded with OpenCV's FFmpeg backend."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from pipeline.errors import UserError
from pipeline.sources.base import SourceError, to_grey


class VideoFileSource:
    live = False

    def __init__(self, path: str | Path, stream_id: str | None = None, ground_truth: np.ndarray | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"video file not found: {self.path}")
        self.stream_id = stream_id or self.path.stem
        self._capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self._capture.isOpened():
            raise UserError(f"cannot decode video {self.path}: not a video file, or the file is corrupt or truncated")
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.num_frames = count if count > 0 else None
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS)) or 30.0
        self._ground_truth = ground_truth

    def __iter__(self) -> Iterator[np.ndarray]:
        read = 0
        while True:
            ok, image = self._capture.read()
            if not ok:
                break
            read += 1
            yield to_grey(image, f"{self.path} frame {read}")
        if read == 0:
            raise SourceError(f"cannot decode any frame of {self.path}: the file is corrupt or truncated")
        # The container announces its length; stopping far short of it means the file was cut.
        if self.num_frames is not None and read < self.num_frames - 1:
            raise SourceError(f"{self.path}: decoding stopped after {read} of {self.num_frames} frames; "
                              "the file is truncated or corrupt (frames read so far were processed)")

    def ground_truth(self) -> np.ndarray | None:
        return self._ground_truth

    def close(self) -> None:
        self._capture.release()
