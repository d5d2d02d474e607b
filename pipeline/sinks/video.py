"""Annotated video: auto-gained frame, detections, confirmed tracks with ids and trails."""
from __future__ import annotations

import queue
import threading
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import UserError
from pipeline.sinks.base import FrameResult
from pipeline.types import TrackStatus


def _palette(n: int = 64) -> np.ndarray:
    hues = (np.arange(n) * 37 % 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 220, np.uint8), np.full(n, 255, np.uint8)], axis=1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]


class AutoGain:
    """Maps 8/16-bit IR to 8-bit for display only: robust percentiles, smoothed over time so the picture does not
    flicker."""

    def __init__(self, low_pct: float = 0.5, high_pct: float = 99.9, smoothing: float = 0.9):
        self.low_pct, self.high_pct, self.smoothing = low_pct, high_pct, smoothing
        self._range: np.ndarray | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        sample = image[::4, ::4]
        current = np.percentile(sample, [self.low_pct, self.high_pct]).astype(np.float64)
        self._range = current if self._range is None else self.smoothing * self._range + (1 - self.smoothing) * current
        low, high = self._range
        scale = 255.0 / max(high - low, 1.0)
        return cv2.convertScaleAbs(image, alpha=scale, beta=-low * scale)


class TrackRenderer:
    """Draws one FrameResult into a BGR picture; keeps each track's recent centres for its trail.

    One renderer serves all picture outputs of a stream (annotated.mp4, --show, outputs.gstreamer): each frame is
    drawn once, by whichever asks first, and the others get the same picture, which nobody may modify.
    """

    def __init__(self, trail_length: int):
        self.trail_length = trail_length
        self.gain = AutoGain()
        self.colours = _palette()
        self._trails: dict[int, deque] = {}
        self._last_seen: dict[int, int] = {}
        self._drawn: tuple[FrameResult, np.ndarray] | None = None

    def render(self, result: FrameResult) -> np.ndarray:
        if self._drawn is None or self._drawn[0] is not result:
            self._drawn = (result, self._draw(result))
        return self._drawn[1]

    def _draw(self, result: FrameResult) -> np.ndarray:
        picture = cv2.cvtColor(self.gain(result.frame.image), cv2.COLOR_GRAY2BGR)
        index = result.frame.index
        for x1, y1, x2, y2 in result.detections.boxes.astype(np.int32).tolist():
            cv2.rectangle(picture, (x1, y1), (x2, y2), (0, 160, 160), 1)
        tracks = result.tracks.reported()
        for track_id, (x, y), status in zip(tracks.ids.tolist(), tracks.states[:, :2].tolist(), tracks.status.tolist()):
            trail = self._trails.setdefault(track_id, deque(maxlen=self.trail_length))
            trail.append((x, y))
            self._last_seen[track_id] = index
            colour = tuple(int(c) for c in self.colours[track_id % len(self.colours)])
            if len(trail) > 1:
                cv2.polylines(picture, [np.round(np.array(trail)).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
            centre = (int(round(x)), int(round(y)))
            thickness = 1 if status == TrackStatus.LOST else 2
            cv2.circle(picture, centre, 6, colour, thickness, cv2.LINE_AA)
            cv2.putText(picture, str(track_id), (centre[0] + 7, centre[1] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        colour, 1, cv2.LINE_AA)
        for track_id in [t for t, seen in self._last_seen.items() if index - seen > self.trail_length]:
            del self._trails[track_id], self._last_seen[track_id]
        caption = f"{result.frame.stream_id} #{index + 1}  tracks {len(tracks)}  dets {len(result.detections)}"
        cv2.putText(picture, caption, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        return picture


class AnnotatedVideoWriter:
    """annotated.mp4 (MPEG-4 part 2, plays everywhere), opened on the first frame to learn its size.

    Encoding (the costliest output) runs on its own thread behind a short blocking queue, so it overlaps drawing
    and the other sinks instead of adding to them; no frame is ever skipped.
    """

    def __init__(self, path: Path, fps: float, renderer: TrackRenderer, queue_size: int = 4):
        self.path, self.fps, self.renderer = path, fps, renderer
        self._pictures: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _encode(self, writer: cv2.VideoWriter) -> None:
        try:
            while (picture := self._pictures.get()) is not None:
                writer.write(picture)
        except BaseException as err:
            self._error = err
            while self._pictures.get() is not None:  # keep the producer from blocking
                pass
        finally:
            writer.release()

    def write(self, result: FrameResult) -> None:
        if self._error is not None:
            raise UserError(f"writing {self.path} failed: {self._error}")
        picture = self.renderer.render(result)
        if self._thread is None:
            height, width = picture.shape[:2]
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not writer.isOpened():
                raise UserError(f"cannot write video {self.path}; set outputs.video=false or choose another --out")
            self._thread = threading.Thread(target=self._encode, args=(writer,), name="video-encoder", daemon=True)
            self._thread.start()
        self._pictures.put(picture)

    def close(self) -> None:
        if self._thread is not None:
            self._pictures.put(None)
            self._thread.join()


class LiveView:
    """--show: the annotated picture in a window (needs an OpenCV build with GUI support)."""

    def __init__(self, renderer: TrackRenderer, window: str = "irst"):
        self.renderer, self.window = renderer, window
        try:
            cv2.namedWindow(window, cv2.WINDOW_NORMAL)
        except cv2.error as err:
            raise UserError("--show needs OpenCV with GUI support and a display; this OpenCV has none "
                            "(opencv-python-headless). Install opencv-python or watch annotated.mp4 instead") from err

    def write(self, result: FrameResult) -> None:
        cv2.imshow(self.window, self.renderer.render(result))
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyWindow(self.window)
