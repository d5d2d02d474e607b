"""Live sources that survive outages: reopen with exponential backoff, report every outage, never stop other streams."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from pipeline.errors import UserError
from pipeline.schema import option, require
from pipeline.sources.base import BadFrame, Source, SourceError

log = logging.getLogger("irst.sources")


@dataclass
class ReconnectConfig:
    enabled: bool = option(True, "reopen a live source that fails or ends, with exponential backoff (replay sources "
                                 "never reconnect: their errors end the run)")
    initial_delay_s: float = option(0.5, "wait before the first reopen attempt of an outage (s)")
    max_delay_s: float = option(30.0, "the wait doubles after every failed attempt, up to this (s)")
    max_attempts: int | None = option(None, "give up after this many failed attempts in one outage and end the "
                                            "stream with an error (null: keep trying until the run is stopped)")
    stall_timeout_s: float = option(10.0, "a live stream that delivers no frame for this long counts as failed (s)")

    def __post_init__(self):
        require(self.initial_delay_s > 0, "initial_delay_s", f"must be > 0 s, got {self.initial_delay_s}")
        require(self.max_delay_s >= self.initial_delay_s, "max_delay_s",
                f"must be at least initial_delay_s ({self.initial_delay_s}), got {self.max_delay_s}")
        require(self.max_attempts is None or self.max_attempts >= 1, "max_attempts",
                f"must be at least 1 or null, got {self.max_attempts}")
        require(self.stall_timeout_s > 0, "stall_timeout_s", f"must be > 0 s, got {self.stall_timeout_s}")


def _close_quietly(source: Source) -> None:
    try:
        source.close()
    except Exception as err:  # the source already failed; its close error adds nothing
        log.debug("closing failed source: %s", err)


def _describe(err: BaseException | None) -> str:
    if err is None:
        return "the stream ended"
    return str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"


class ReconnectingSource:
    """Wraps a live source: when it raises or ends, close it and reopen it (waits initial_delay_s, doubling up to
    max_delay_s) until frames flow again. An outage ends with the first frame of the reopened source, so a
    source that opens but fails at once keeps backing off. ``outages`` lists every outage for summary.json.
    """

    live = True
    num_frames = None

    def __init__(self, source: Source, reopen: Callable[[], Source], config: ReconnectConfig):
        self._source, self._reopen, self.config = source, reopen, config
        self.stream_id = source.stream_id
        self.outages: list[dict] = []
        self._stop = threading.Event()

    @property
    def fps(self) -> float:
        return self._source.fps

    def ground_truth(self) -> None:
        return None

    def interrupt(self) -> None:
        self._stop.set()
        interrupt = getattr(self._source, "interrupt", None)
        if interrupt is not None:
            interrupt()

    def close(self) -> None:
        self._source.close()

    def __iter__(self) -> Iterator[np.ndarray | BadFrame]:
        outage = None
        while True:
            error = None
            try:
                for image in self._source:
                    if outage is not None:
                        self._end(outage, recovered=True)
                        outage = None
                    yield image
            except Exception as err:  # any failure of a live stream is an outage, whatever raised it
                error = err
            if self._stop.is_set():
                break
            if outage is None:
                outage = self._begin(_describe(error))
            else:
                outage["last_error"] = _describe(error)
            if not self._reconnect(outage):
                break
        if outage is not None:
            self._end(outage, recovered=False)

    def _begin(self, reason: str) -> dict:
        log.warning("%s: stream lost (%s); reconnecting with backoff", self.stream_id, reason)
        outage = {"stream": self.stream_id, "reason": reason, "last_error": reason, "started_unix": time.time(),
                  "attempts": 0, "recovered": False, "duration_s": None, "_t0": time.monotonic()}
        self.outages.append(outage)
        return outage

    def _end(self, outage: dict, recovered: bool) -> None:
        outage["duration_s"] = round(time.monotonic() - outage.pop("_t0"), 3)
        outage["recovered"] = recovered
        if recovered:
            log.warning("%s: stream back after %.1f s (%d reopen attempts)", self.stream_id, outage["duration_s"],
                        outage["attempts"])

    def _reconnect(self, outage: dict) -> bool:
        """Close the failed source and reopen with backoff until one opens; False when the run stops first."""
        _close_quietly(self._source)
        while True:
            if self.config.max_attempts is not None and outage["attempts"] >= self.config.max_attempts:
                self._end(outage, recovered=False)
                raise SourceError(f"{self.stream_id}: gave up after {outage['attempts']} reconnect attempts over "
                                  f"{outage['duration_s']:.1f} s; last error: {outage['last_error']} "
                                  "(raise source.reconnect.max_attempts or set it to null to keep trying)")
            delay = min(self.config.initial_delay_s * 2 ** outage["attempts"], self.config.max_delay_s)
            if self._stop.wait(delay):
                return False
            outage["attempts"] += 1
            try:
                self._source = self._reopen()
                return True
            except Exception as err:
                outage["last_error"] = _describe(err)
                log.info("%s: reopen attempt %d failed: %s", self.stream_id, outage["attempts"], outage["last_error"])
