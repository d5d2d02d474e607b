"""Runner mechanics: replay never drops, live drops the oldest and counts, stop drains, errors keep results."""
import threading
import time

from pipeline.runner import Runner
from pipeline.types import Detections, Tracks
from tests.conftest import FakeSource


class SlowDetector:
    name = "slow"

    def __init__(self, delay_s=0.0):
        self.delay_s, self.batches = delay_s, []

    def detect(self, images):
        self.batches.append(len(images))
        time.sleep(self.delay_s)
        return [Detections.empty() for _ in images]

    def close(self):
        pass


class RecordingTracker:
    def __init__(self):
        self.indices = []

    def update(self, frame_index, detections, image=None):
        self.indices.append(frame_index)
        return Tracks.empty()


class RecordingSink:
    def __init__(self):
        self.frames, self.closed = [], False

    def write(self, result):
        self.frames.append(result.frame.index)

    def close(self):
        self.closed = True


def test_replay_applies_backpressure_and_never_drops():
    source, sink, tracker = FakeSource(60), RecordingSink(), RecordingTracker()
    stats = Runner(source, SlowDetector(0.002), tracker, [sink], queue_size=2).run()
    assert stats.dropped == 0 and stats.frames == 60
    assert sink.frames == list(range(60)) and tracker.indices == list(range(60))
    assert sink.closed and source.closed
    assert set(stats.latency_ms()) == {"read", "queue", "detect", "track", "sinks", "end_to_end"}


def test_live_source_drops_oldest_and_counts_every_drop():
    source, sink = FakeSource(200, live=True), RecordingSink()
    stats = Runner(source, SlowDetector(0.005), RecordingTracker(), [sink], queue_size=2).run()
    assert stats.dropped > 0
    assert stats.frames + stats.dropped == 200  # every frame either processed or counted as dropped
    assert sink.frames == sorted(sink.frames) and sink.frames[-1] == 199  # the newest frame survives


def test_batches_fill_up_to_batch_size():
    detector = SlowDetector(0.001)
    Runner(FakeSource(40), detector, RecordingTracker(), [RecordingSink()], batch_size=4,
           max_wait_ms=50, queue_size=8).run()
    assert max(detector.batches) == 4 and sum(detector.batches) == 40


def test_stop_drains_frames_already_read_and_closes_sinks():
    sink = RecordingSink()
    runner = Runner(FakeSource(100_000), SlowDetector(0.001), RecordingTracker(), [sink], queue_size=4)
    threading.Timer(0.2, runner.stop).start()
    stats = runner.run()
    assert 0 < stats.frames < 100_000 and sink.closed
    assert sink.frames == list(range(stats.frames))  # contiguous: nothing read was lost


def test_source_error_keeps_frames_before_it():
    sink = RecordingSink()
    stats = Runner(FakeSource(50, fail_at=30), SlowDetector(), RecordingTracker(), [sink]).run()
    assert sink.frames == list(range(30)) and sink.closed
    assert len(stats.errors) == 1 and "frame 30 is corrupt" in str(stats.errors[0])


def test_detector_error_stops_cleanly():
    class Broken(SlowDetector):
        def detect(self, images):
            raise RuntimeError("engine crashed")

    sink = RecordingSink()
    stats = Runner(FakeSource(500), Broken(), RecordingTracker(), [sink], queue_size=2).run()
    assert sink.closed and sink.frames == [] and "engine crashed" in str(stats.errors[0])
