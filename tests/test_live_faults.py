"""Fault handling of live streams: outages with backoff and recovery, unusable frames skipped and counted,
one failing stream never stopping the others."""
import logging
import threading
import time
from itertools import islice

import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.runner import MultiStreamRunner, Runner, Stream
from pipeline.sources.base import BadFrame, SourceError
from pipeline.sources.reconnect import ReconnectConfig, ReconnectingSource
from tests.conftest import FakeSource
from tests.test_runner import RecordingSink, RecordingTracker, SlowDetector


def camera(stream_id, counter, fail_after=None, frames=None):
    """A live camera: frames carry a global counter; a connection fails after ``fail_after`` frames."""
    return FakeSource(frames, live=True, fail_at=fail_after, stream_id=stream_id, counter=counter,
                      error="{stream}: camera unplugged")


class Reopener:
    """Reopens the camera; the first ``refusals`` attempts fail, as a camera still rebooting would."""

    def __init__(self, stream_id, counter, refusals=0, **settings):
        self.stream_id, self.counter, self.refusals, self.settings = stream_id, counter, refusals, settings
        self.times = []

    def __call__(self):
        self.times.append(time.monotonic())
        if len(self.times) <= self.refusals:
            raise UserError(f"{self.stream_id}: connection refused")
        return camera(self.stream_id, self.counter, **self.settings)


def fast(**overrides) -> ReconnectConfig:
    return ReconnectConfig(**{"initial_delay_s": 0.05, "max_delay_s": 1.0, **overrides})


def test_source_that_fails_mid_stream_recovers_with_exponential_backoff():
    counter = [0]
    first = camera("cam", counter, fail_after=10)
    reopen = Reopener("cam", counter, refusals=2, frames=15)  # the camera answers on the third attempt
    source = ReconnectingSource(first, reopen, fast(max_attempts=None))
    t0 = time.monotonic()
    values = [int(im[0, 0]) for im in islice(source, 25)]
    assert first.closed
    assert values == list(range(1, 26))  # 10 frames, the outage, then the reopened camera's frames: none lost
    outage = source.outages[0]
    assert outage["recovered"] and outage["attempts"] == 3 and "camera unplugged" in outage["reason"]
    assert outage["last_error"] == "cam: connection refused"
    gaps = np.diff([t0] + reopen.times[:3])
    assert np.allclose(gaps, [0.05, 0.1, 0.2], atol=0.04)  # waits double: 0.05, 0.1, 0.2 s


def test_outage_lasts_until_frames_flow_and_gives_up_after_max_attempts(caplog):
    counter = [0]
    # Every reopened camera opens fine but fails before its first frame: still one outage, backing off.
    source = ReconnectingSource(camera("cam", counter, fail_after=3), Reopener("cam", counter, fail_after=0),
                                fast(max_attempts=4))
    images = []
    with caplog.at_level(logging.WARNING, logger="irst.sources"), pytest.raises(SourceError, match="gave up after 4"):
        for image in source:
            images.append(image)
    assert len(images) == 3 and len(source.outages) == 1
    assert source.outages[0]["attempts"] == 4 and not source.outages[0]["recovered"]
    assert "stream lost" in caplog.text and "reconnecting" in caplog.text


def test_stop_during_backoff_returns_at_once():
    source = ReconnectingSource(camera("cam", [0], fail_after=2), Reopener("cam", [0], refusals=100),
                                ReconnectConfig(initial_delay_s=20, max_delay_s=20))
    threading.Timer(0.2, source.interrupt).start()
    t0 = time.monotonic()
    assert len(list(source)) == 2
    assert time.monotonic() - t0 < 2 and not source.outages[0]["recovered"]


def test_one_stream_down_the_others_keep_running():
    counter = [0]
    flaky = ReconnectingSource(camera("flaky", counter, fail_after=5), Reopener("flaky", counter, refusals=1,
                                                                                  frames=20), fast())
    broken = FakeSource(50, fail_at=7, stream_id="broken")
    steady = FakeSource(200, stream_id="steady")
    sinks = {name: RecordingSink() for name in ("flaky", "broken", "steady")}
    streams = [Stream(src, RecordingTracker(), [sinks[src.stream_id]], max_frames=20 if src is flaky else None)
               for src in (flaky, broken, steady)]
    runner = MultiStreamRunner(streams, SlowDetector(0.001), batch_size=4, queue_size=4)
    stats = runner.run()
    assert sinks["steady"].frames == list(range(200))  # never dropped (replay), never stopped
    assert sinks["broken"].frames == list(range(7)) and "frame 7 is corrupt" in str(stats.streams["broken"].errors[0])
    assert stats.streams["flaky"].frames + stats.streams["flaky"].dropped == 20 and not stats.streams["flaky"].errors
    assert len(flaky.outages) == 1 and flaky.outages[0]["recovered"] and flaky.outages[0]["attempts"] == 2
    assert [str(e) for e in stats.errors] == ["frame 7 is corrupt"]


class MixedSource(FakeSource):
    """A camera that now and then delivers something unusable."""

    def __iter__(self):
        good = np.zeros((8, 8), np.uint16)
        for i in range(self.num_frames):
            if i % 10 == 3:
                yield np.zeros((8, 9), np.uint8)  # the picture changed size and depth
            elif i % 10 == 5:
                yield good.astype(np.float32)  # a decoder handed over floats
            elif i % 10 == 7:
                yield np.zeros((8, 8, 2), np.uint8)  # not a grey image
            elif i % 10 == 9:
                yield BadFrame("packet lost")
            else:
                yield good


def test_wrong_size_dtype_and_corrupt_frames_are_skipped_counted_and_logged(caplog):
    sink = RecordingSink()
    with caplog.at_level(logging.WARNING, logger="irst.runner"):
        stats = Runner(MixedSource(100, live=True), SlowDetector(), RecordingTracker(), [sink], queue_size=200).run()
    assert stats.skipped == {"format_changed": 10, "wrong_dtype": 10, "wrong_shape": 10, "corrupt": 10}
    assert sink.frames == [i for i in range(100) if i % 10 not in (3, 5, 7, 9)]  # the rest keep their index
    assert not stats.errors and stats.frames == 60
    assert "skipped frame 4 (format_changed: 9x8 uint8, but the stream started at 8x8 uint16)" in caplog.text
    assert "skipped frame 10 (corrupt: packet lost)" in caplog.text
    assert caplog.text.count("wrong_dtype") == 2  # the first and the tenth, not every one
