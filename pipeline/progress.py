"""A console progress line (frames, fps, ETA) for long runs; a plain line every few seconds when not on a terminal."""
from __future__ import annotations

import sys
import time


class ProgressLine:
    def __init__(self, total: int | None, label: str, stream=None, interval_s: float = 0.5):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval_s = interval_s if self.tty else 5.0
        self._start = time.monotonic()
        self._last = 0.0

    def _text(self, done: int, dropped: int) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        fps = done / elapsed
        text = f"{self.label}: {done}"
        if self.total:
            share = min(done / self.total, 1.0)
            bar = "#" * int(share * 24)
            eta = (self.total - done) / fps if fps > 0 else float("inf")
            text = f"{self.label} [{bar:<24}] {done}/{self.total} frames  {fps:5.1f} fps  ETA {eta:4.0f} s"
        else:
            text += f" frames  {fps:5.1f} fps"
        return text + (f"  dropped {dropped}" if dropped else "")

    def update(self, done: int, dropped: int = 0) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self.stream.write(("\r" if self.tty else "") + self._text(done, dropped) + ("" if self.tty else "\n"))
        self.stream.flush()

    def finish(self, done: int, dropped: int = 0) -> None:
        self.stream.write(("\r" if self.tty else "") + self._text(done, dropped) + "\n")
        self.stream.flush()
