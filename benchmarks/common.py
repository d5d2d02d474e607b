"""What the benchmarks share: the machine record next to their numbers, a timing loop, and a source replaying
frames from memory."""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import numpy as np


def machine(packages: tuple[str, ...] = (), **extra) -> dict:
    """CPU model, core count, Python and the versions of `packages`, so results can be compared."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    for package in ("numpy",) + tuple(packages):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    info.update(extra)
    return info


def latencies_ms(run: Callable[[int], object], runs: int, warmup: int) -> np.ndarray:
    """Milliseconds of each of ``runs`` timed calls ``run(i)`` (i = 0 ..), after ``warmup`` untimed calls."""
    for index in range(warmup):
        run(index)
    times = np.empty(runs)
    for index in range(runs):
        start = time.perf_counter()
        run(index)
        times[index] = 1e3 * (time.perf_counter() - start)
    return times


class ReplaySource:
    """Pre-rendered frames replayed from memory, so scene synthesis and decoding are not timed: ``total`` frames
    (None: endlessly, in a loop), as fast as the pipeline takes them or paced at ``fps`` like a live camera."""

    def __init__(self, stream_id: str, frames: list[np.ndarray], total: int | None, fps: float | None = None,
                 ground_truth: np.ndarray | None = None):
        self.stream_id, self.frames, self.total, self.pace, self._gt = stream_id, frames, total, fps, ground_truth
        self.live, self.fps, self.num_frames = fps is not None, fps or 30.0, total

    def __iter__(self):
        next_at = time.monotonic()
        index = 0
        while self.total is None or index < self.total:
            if self.pace:
                next_at += 1.0 / self.pace
                time.sleep(max(next_at - time.monotonic(), 0.0))
            yield self.frames[index % len(self.frames)]
            index += 1

    def ground_truth(self):
        return self._gt

    def close(self):
        pass
