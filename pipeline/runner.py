"""The stage runner: one reader thread per stream -> per-stream bounded queues -> one detector thread that batches
frames across streams -> one tracker per stream -> one sink thread per stream.

Replay sources block when their queue is full (nothing is ever dropped); live sources drop their own oldest
queued frame and count it. Frames that arrive unusable (corrupt, wrong size or pixel type) are skipped, counted
per reason and logged; they keep their index, like dropped frames. A stream whose source fails ends alone (live
sources reconnect inside their source, see pipeline/sources/reconnect.py); the other streams keep running. A stop
request (signal, detector or sink error) stops reading, lets every frame already queued go through detection,
tracking and the sinks, then closes the sinks: nothing processed is lost.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from engines.base import Detector
from pipeline.sinks.base import FrameResult, Sink
from pipeline.sources.base import Source, frame_problem
from pipeline.types import Frame
from trackers.base import Tracker

STAGES = ("read", "queue", "detect", "track", "sinks", "end_to_end")
# Latency percentiles cover the most recent frames only, so a stream that runs for days keeps bounded memory.
LATENCY_WINDOW = 100_000
_END = object()
log = logging.getLogger("irst.runner")


@dataclass
class RunStats:
    """What the runner measured, for one stream or for all; per-stage latencies are per frame, in nanoseconds,
    for (at least) the last LATENCY_WINDOW frames."""

    frames: int = 0
    dropped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> frames rejected as unusable
    wall_s: float = 0.0
    stage_ns: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in STAGES})
    errors: list[BaseException] = field(default_factory=list)
    streams: dict[str, "RunStats"] = field(default_factory=dict)  # per stream, in the totals only

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


@dataclass
class Stream:
    """One source with its own tracker and sinks; ``max_frames`` (None: the runner's) ends it early."""

    source: Source
    tracker: Tracker
    sinks: list[Sink]
    max_frames: int | None = None


class FrameQueues:
    """Bounded per-stream frame queues behind one lock, so that one consumer can batch frames across streams.

    A live stream's put discards that stream's oldest frame when its queue is full (never another stream's); a
    replay stream's put waits for room. ``take`` hands out frames round-robin so no stream starves the others.
    """

    def __init__(self, stream_ids: Sequence[str], maxsize: int):
        self._queues = {sid: deque() for sid in stream_ids}
        self._open = set(stream_ids)
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._next = 0

    def put(self, frame: Frame, live: bool, cancelled: threading.Event) -> int:
        """Queue ``frame``; returns how many frames were dropped for it (live only). Gives up when cancelled."""
        with self._cond:
            pending = self._queues[frame.stream_id]
            dropped = 0
            while len(pending) >= self._maxsize:
                if live:
                    pending.popleft()
                    dropped += 1
                elif cancelled.is_set():
                    return 0
                else:
                    self._cond.wait(0.1)
            pending.append(frame)
            self._cond.notify_all()
            return dropped

    def close(self, stream_id: str) -> None:
        """The stream puts no more frames; ``take`` returns None once every stream is closed and drained."""
        with self._cond:
            self._open.discard(stream_id)
            self._cond.notify_all()

    def _pop_round_robin(self, count: int) -> list[Frame]:
        order = list(self._queues.values())
        taken = []
        while len(taken) < count and any(order):
            pending = order[self._next % len(order)]
            self._next += 1
            if pending:
                taken.append(pending.popleft())
        return taken

    def take(self, count: int, max_wait_s: float) -> list[Frame] | None:
        """Up to ``count`` frames: wait for the first, then at most ``max_wait_s`` for the rest; None at the end."""
        with self._cond:
            while not any(self._queues.values()):
                if not self._open:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + max_wait_s
            batch = self._pop_round_robin(count)
            # The pop took everything queued, so until the batch is full there is only waiting for more.
            while len(batch) < count and self._open and (remaining := deadline - time.monotonic()) > 0:
                self._cond.wait(remaining)
                batch += self._pop_round_robin(count - len(batch))
            self._cond.notify_all()  # room for waiting replay readers
            return batch


class MultiStreamRunner:
    def __init__(self, streams: Sequence[Stream], detector: Detector, *, queue_size: int = 8, batch_size: int = 1,
                 max_wait_ms: float = 2.0, max_frames: int | None = None, max_duration_s: float | None = None,
                 on_progress: Callable[[RunStats], None] | None = None):
        ids = [s.source.stream_id for s in streams]
        if len(set(ids)) != len(ids):
            raise ValueError(f"stream ids must be unique, got {ids}")
        self.streams = {sid: s for sid, s in zip(ids, streams)}
        self.detector = detector
        # A multi-frame model stacks each frame with its stream's previous ones, so it is told the streams.
        self.multi_frame = getattr(detector, "frames", 1) > 1
        self.batch_size, self.max_wait_s, self.max_frames = batch_size, max_wait_ms / 1e3, max_frames
        self.on_progress, self.max_duration_s, self.timed_out = on_progress, max_duration_s, False
        self.frames = FrameQueues(ids, queue_size)
        self.results = {sid: queue.Queue(maxsize=queue_size) for sid in ids}
        self.stop_requested = threading.Event()
        self.stats = RunStats(streams={sid: RunStats() for sid in ids})
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Ask the run to finish: reading stops, frames already read are still processed and written."""
        self.stop_requested.set()
        for stream in self.streams.values():
            interrupt = getattr(stream.source, "interrupt", None)
            if interrupt is not None:
                interrupt()

    def _record_error(self, stream_id: str | None, err: BaseException) -> None:
        with self._lock:
            self.stats.errors.append(err)
            if stream_id is not None:
                self.stats.streams[stream_id].errors.append(err)

    def _fail(self, err: BaseException, stream_id: str | None = None) -> None:
        """An error that ends the whole run (detector, sinks)."""
        self._record_error(stream_id, err)
        self.stop()

    def _skip(self, stream_id: str, index: int, reason: str, detail: str) -> None:
        with self._lock:
            per_stream = self.stats.streams[stream_id].skipped
            per_stream[reason] = count = per_stream.get(reason, 0) + 1
            self.stats.skipped[reason] = self.stats.skipped.get(reason, 0) + 1
        if count in (1, 10) or count % 100 == 0:  # every kind shows up at once without flooding the console
            log.warning("%s: skipped frame %d (%s: %s); %d skipped for this reason so far",
                        stream_id, index + 1, reason, detail, count)

    def _read(self, stream_id: str) -> None:
        stream = self.streams[stream_id]
        source = stream.source
        max_frames = stream.max_frames if stream.max_frames is not None else self.max_frames
        first = None
        try:
            images = iter(source)
            index = 0
            while not self.stop_requested.is_set() and (max_frames is None or index < max_frames):
                start = time.monotonic_ns()
                image = next(images, None)
                if image is None:
                    break
                problem = frame_problem(image, first)
                if problem is not None:
                    self._skip(stream_id, index, *problem)
                    index += 1
                    continue
                first = first or (image.shape, image.dtype)
                now = time.monotonic_ns()
                # Reconnecting live sources list their outages (pipeline/sources/reconnect.py).
                frame = Frame(stream_id, index, now, image, restarts=len(getattr(source, "outages", ())))
                frame.timings_ns["read"] = now - start
                dropped = self.frames.put(frame, source.live, self.stop_requested)
                if dropped:
                    with self._lock:
                        self.stats.dropped += dropped
                        self.stats.streams[stream_id].dropped += dropped
                index += 1
        except BaseException as err:  # this stream ends; frames already read still go through, others go on
            self._record_error(stream_id, err)
        finally:
            self.frames.close(stream_id)

    def _infer(self) -> None:
        try:
            while (batch := self.frames.take(self.batch_size, self.max_wait_s)) is not None:
                started = time.monotonic_ns()
                images = [f.image for f in batch]
                if self.multi_frame:
                    detections = self.detector.detect(images, streams=[f.stream_id for f in batch],
                                                      restarts=[f.restarts for f in batch])
                else:
                    detections = self.detector.detect(images)
                detected = time.monotonic_ns()
                for frame, dets in zip(batch, detections):
                    frame.timings_ns["queue"] = started - frame.timestamp_ns
                    frame.timings_ns["detect"] = (detected - started) // len(batch)
                    t0 = time.monotonic_ns()
                    tracks = self.streams[frame.stream_id].tracker.update(frame.index, dets, frame.image)
                    frame.timings_ns["track"] = time.monotonic_ns() - t0
                    self.results[frame.stream_id].put(FrameResult(frame, dets, tracks))
        except BaseException as err:
            self._fail(err)
        finally:
            for results in self.results.values():
                results.put(_END)

    def _write(self, stream_id: str) -> None:
        sinks, results = self.streams[stream_id].sinks, self.results[stream_id]
        stats, total = self.stats.streams[stream_id], self.stats
        sinks_failed = False
        while (result := results.get()) is not _END:
            if sinks_failed:  # keep draining so the detector thread can finish
                continue
            t0 = time.monotonic_ns()
            try:
                for sink in sinks:
                    sink.write(result)
            except BaseException as err:
                sinks_failed = True
                self._fail(err, stream_id)
                continue
            done = time.monotonic_ns()
            timings = result.frame.timings_ns
            timings["sinks"] = done - t0
            timings["end_to_end"] = done - result.frame.timestamp_ns
            with self._lock:
                for name in STAGES:
                    for values in (stats.stage_ns[name], total.stage_ns[name]):
                        values.append(timings[name])
                        if len(values) >= 2 * LATENCY_WINDOW:  # trimmed in halves: amortised O(1) per frame
                            del values[:-LATENCY_WINDOW]
                stats.frames += 1
                total.frames += 1

    def run(self) -> RunStats:
        """Run to the end of every source or until stop(); always closes every sink and source."""
        start = time.monotonic()
        threads = [threading.Thread(target=self._read, args=(sid,), name=f"reader-{sid}", daemon=True)
                   for sid in self.streams]
        threads.append(threading.Thread(target=self._infer, name="detector", daemon=True))
        writers = [threading.Thread(target=self._write, args=(sid,), name=f"sinks-{sid}", daemon=True)
                   for sid in self.streams]
        threads += writers
        for thread in threads:
            thread.start()
        try:
            for writer in writers:
                while writer.is_alive():
                    writer.join(timeout=0.2)
                    if self.on_progress:
                        self.on_progress(self.stats)
                    if self.max_duration_s is not None and time.monotonic() - start > self.max_duration_s \
                            and not self.stop_requested.is_set():
                        self.timed_out = True
                        self.stop()
        finally:
            for thread in threads:
                thread.join()
            self.stats.wall_s = time.monotonic() - start
            for sid, stream in self.streams.items():
                self.stats.streams[sid].wall_s = self.stats.wall_s
                for closer in [*stream.sinks, stream.source]:
                    try:
                        closer.close()
                    except BaseException as err:
                        self._record_error(sid, err)
        return self.stats


class Runner(MultiStreamRunner):
    """The single-stream case: one source, one tracker, its sinks."""

    def __init__(self, source: Source, detector: Detector, tracker: Tracker, sinks: Sequence[Sink], **options):
        super().__init__([Stream(source, tracker, list(sinks))], detector, **options)
