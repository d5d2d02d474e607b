"""The stage runner: reader thread -> bounded queue -> detector + tracker thread -> bounded queue -> sink thread.

Replay sources block when the queue is full (nothing is ever dropped); live sources drop the oldest queued frame
and count it. A stop request (signal, source error, sink error) stops reading, lets every frame already read go
through detection, tracking and the sinks, then closes the sinks: nothing processed is lost.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from engines.base import Detector
from pipeline.sinks.base import FrameResult, Sink
from pipeline.sources.base import Source
from pipeline.types import Frame
from trackers.base import Tracker

STAGES = ("read", "queue", "detect", "track", "sinks", "end_to_end")
_END = object()


@dataclass
class RunStats:
    """What the runner measured; per-stage latencies are per frame, in nanoseconds."""

    frames: int = 0
    dropped: int = 0
    wall_s: float = 0.0
    stage_ns: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in STAGES})
    errors: list[BaseException] = field(default_factory=list)

    def latency_ms(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage, values in self.stage_ns.items():
            if values:
                ms = np.asarray(values, np.float64) / 1e6
                out[stage] = {"p50": round(float(np.percentile(ms, 50)), 4),
                              "p95": round(float(np.percentile(ms, 95)), 4), "max": round(float(ms.max()), 4)}
        return out

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def _put_drop_oldest(q: queue.Queue, item: Frame) -> int:
    """Put without waiting; when full, discard the oldest queued frame. Returns how many frames were dropped."""
    dropped = 0
    while True:
        try:
            q.put_nowait(item)
            return dropped
        except queue.Full:
            try:
                q.get_nowait()
                dropped += 1
            except queue.Empty:
                pass


class Runner:
    def __init__(self, source: Source, detector: Detector, tracker: Tracker, sinks: Sequence[Sink], *,
                 queue_size: int = 8, batch_size: int = 1, max_wait_ms: float = 2.0,
                 max_frames: int | None = None, on_progress: Callable[[RunStats], None] | None = None):
        self.source, self.detector, self.tracker, self.sinks = source, detector, tracker, list(sinks)
        self.batch_size, self.max_wait_s, self.max_frames = batch_size, max_wait_ms / 1e3, max_frames
        self.on_progress = on_progress
        self.frames: queue.Queue = queue.Queue(maxsize=queue_size)
        self.results: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stop_requested = threading.Event()
        self.stats = RunStats()

    def stop(self) -> None:
        """Ask the run to finish: reading stops, frames already read are still processed and written."""
        self.stop_requested.set()

    def _fail(self, err: BaseException) -> None:
        self.stats.errors.append(err)
        self.stop_requested.set()

    def _put_frame(self, frame: Frame) -> None:
        if self.source.live:
            self.stats.dropped += _put_drop_oldest(self.frames, frame)
            return
        while not self.stop_requested.is_set():
            try:
                self.frames.put(frame, timeout=0.1)
                return
            except queue.Full:
                pass

    def _read(self) -> None:
        try:
            images = iter(self.source)
            index = 0
            while not self.stop_requested.is_set() and (self.max_frames is None or index < self.max_frames):
                start = time.monotonic_ns()
                image = next(images, None)
                if image is None:
                    break
                now = time.monotonic_ns()
                frame = Frame(self.source.stream_id, index, now, image)
                frame.timings_ns["read"] = now - start
                self._put_frame(frame)
                index += 1
        except BaseException as err:  # reported by the CLI; frames already read still go through
            self._fail(err)
        finally:
            self.frames.put(_END)

    def _next_batch(self) -> tuple[list[Frame], bool]:
        """Up to batch_size frames: wait for the first, then at most max_wait for the rest."""
        item = self.frames.get()
        if item is _END:
            return [], True
        batch = [item]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.batch_size:
            try:
                item = self.frames.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                break
            if item is _END:
                return batch, True
            batch.append(item)
        return batch, False

    def _infer(self) -> None:
        ended = False
        try:
            while not ended:
                batch, ended = self._next_batch()
                if not batch:
                    continue
                started = time.monotonic_ns()
                detections = self.detector.detect([f.image for f in batch])
                detected = time.monotonic_ns()
                for frame, dets in zip(batch, detections):
                    frame.timings_ns["queue"] = started - frame.timestamp_ns
                    frame.timings_ns["detect"] = (detected - started) // len(batch)
                    t0 = time.monotonic_ns()
                    tracks = self.tracker.update(frame.index, dets, frame.image)
                    frame.timings_ns["track"] = time.monotonic_ns() - t0
                    self.results.put(FrameResult(frame, dets, tracks))
        except BaseException as err:
            self._fail(err)
            while not ended:  # unblock the reader
                ended = self.frames.get() is _END
        finally:
            self.results.put(_END)

    def _write(self) -> None:
        stage = self.stats.stage_ns
        sinks_failed = False
        while True:
            result = self.results.get()
            if result is _END:
                break
            if sinks_failed:  # keep draining so the other threads can finish
                continue
            t0 = time.monotonic_ns()
            try:
                for sink in self.sinks:
                    sink.write(result)
            except BaseException as err:
                sinks_failed = True
                self._fail(err)
                continue
            done = time.monotonic_ns()
            timings = result.frame.timings_ns
            timings["sinks"] = done - t0
            for name in ("read", "queue", "detect", "track", "sinks"):
                stage[name].append(timings[name])
            stage["end_to_end"].append(done - result.frame.timestamp_ns)
            self.stats.frames += 1

    def run(self) -> RunStats:
        """Run to the end of the source or until stop(); always closes the sinks and the source."""
        start = time.monotonic()
        threads = [threading.Thread(target=t, name=n, daemon=True)
                   for t, n in ((self._read, "reader"), (self._infer, "detector"), (self._write, "sinks"))]
        for thread in threads:
            thread.start()
        try:
            while threads[-1].is_alive():
                threads[-1].join(timeout=0.2)
                if self.on_progress:
                    self.on_progress(self.stats)
        finally:
            for thread in threads:
                thread.join()
            self.stats.wall_s = time.monotonic() - start
            for closer in [*self.sinks, self.source]:
                try:
                    closer.close()
                except BaseException as err:
                    self.stats.errors.append(err)
        return self.stats
