"""GStreamer sources and the re-publishing sink, run for real: videotestsrc, an appsrc-fed 16-bit IR stream,
corrupt buffers, broken pipelines. gst-launch-1.0 writing raw buffers to a file is the independent reference."""
import shutil
import subprocess
import threading

import cv2
import numpy as np
import pytest

gi = pytest.importorskip("gi", reason="needs PyGObject (pip install 'irst-track[gstreamer]')")

from pipeline.errors import UserError  # noqa: E402
from pipeline.runner import Runner  # noqa: E402
from pipeline.sinks.base import FrameResult  # noqa: E402
from pipeline.sources import SourceConfig, open_source  # noqa: E402
from pipeline.sources.base import SourceError  # noqa: E402
from pipeline.sources.gstreamer import GStreamerSource  # noqa: E402
from pipeline.types import Detections, Frame, Tracks  # noqa: E402
from simulation import SyntheticScene, SyntheticSceneConfig  # noqa: E402
from tests.test_runner import RecordingSink, RecordingTracker, SlowDetector  # noqa: E402

GST_LAUNCH = shutil.which("gst-launch-1.0")


def gst_reference(tmp_path, caps: str, frames: int, pattern: str = "ball") -> bytes:
    if GST_LAUNCH is None:
        pytest.skip("needs gst-launch-1.0 (apt-get install gstreamer1.0-tools)")
    raw = tmp_path / "reference.raw"
    subprocess.run([GST_LAUNCH, "-q", "videotestsrc", f"num-buffers={frames}", f"pattern={pattern}", "!", caps,
                    "!", "filesink", f"location={raw}"], check=True, timeout=60)
    return raw.read_bytes()


def unpad(raw: bytes, frames: int, height: int, width: int, bytes_per_pixel: int, dtype) -> np.ndarray:
    """GStreamer pads each row of raw grey video to a multiple of 4 bytes."""
    stride = (width * bytes_per_pixel + 3) // 4 * 4
    rows = np.frombuffer(raw, np.uint8).reshape(frames, height, stride)[:, :, :width * bytes_per_pixel]
    return np.ascontiguousarray(rows).view(dtype)


def read_all(source):
    try:
        return list(source)
    finally:
        source.close()


@pytest.mark.parametrize("fmt, dtype, bpp", [("GRAY8", np.uint8, 1), ("GRAY16_LE", np.dtype("<u2"), 2)])
def test_videotestsrc_frames_match_gst_launch_bit_for_bit(tmp_path, fmt, dtype, bpp):
    caps = f"video/x-raw,format={fmt},width=65,height=33,framerate=25/1"  # odd width: padded rows
    expected = unpad(gst_reference(tmp_path, caps, 6), 6, 33, 65, bpp, dtype)
    source = open_source(SourceConfig(kind="auto", path=f"videotestsrc num-buffers=6 pattern=ball ! {caps} ! appsink"))
    assert not source.live and source.fps == 25.0
    images = read_all(source)
    assert len(images) == 6
    assert all(im.shape == (33, 65) and im.dtype == np.dtype(dtype).newbyteorder("=") for im in images)
    assert np.array_equal(np.stack(images), expected)
    if fmt == "GRAY16_LE":
        assert max(int(im.max()) for im in images) > 255  # really 16-bit, not 8-bit scaled up


def test_colour_pipeline_is_converted_to_grey_once(tmp_path):
    caps = "video/x-raw,format=BGR,width=40,height=30"
    reference = unpad(gst_reference(tmp_path, caps, 2, "smpte"), 2, 30, 40 * 3, 1, np.uint8)
    import cv2

    images = read_all(GStreamerSource(f"videotestsrc num-buffers=2 pattern=smpte ! {caps} ! appsink"))
    expected = cv2.cvtColor(reference[0].reshape(30, 40, 3), cv2.COLOR_BGR2GRAY)
    assert images[0].dtype == np.uint8 and np.array_equal(images[0], expected)


def feed(appsrc, frames, Gst, fps=30):
    """Push frames into an appsrc from a thread, as a camera driver would, then end the stream."""
    for i, frame in enumerate(frames):
        buffer = Gst.Buffer.new_wrapped(np.ascontiguousarray(frame).tobytes())
        buffer.pts, buffer.duration = i * Gst.SECOND // fps, Gst.SECOND // fps
        appsrc.emit("push-buffer", buffer)
    appsrc.emit("end-of-stream")


def test_appsrc_fed_sixteen_bit_ir_stream_arrives_unchanged():
    from gi.repository import Gst

    scene = SyntheticScene(SyntheticSceneConfig(width=96, height=70, frames=20, seed=3))
    frames = [scene.frame(i) for i in range(len(scene))]
    assert frames[0].dtype == np.uint16
    source = GStreamerSource("appsrc name=ir is-live=true format=time caps=video/x-raw,format=GRAY16_LE,width=96,"
                             "height=70,framerate=30/1 ! queue ! appsink", stream_id="ir0")
    assert source.live  # a live appsrc is a live camera to the pipeline
    feeder = threading.Thread(target=feed, args=(source.element("ir"), frames, Gst))
    feeder.start()
    images = read_all(source)
    feeder.join()
    assert len(images) == 20 and all(im.dtype == np.uint16 for im in images)
    assert all(np.array_equal(a, b) for a, b in zip(images, frames))


def test_sixteen_bit_stays_sixteen_bit_through_the_runner():
    class DtypeDetector(SlowDetector):
        def detect(self, images):
            self.dtypes = getattr(self, "dtypes", set()) | {im.dtype for im in images}
            return super().detect(images)

    detector, sink = DtypeDetector(), RecordingSink()
    source = GStreamerSource("videotestsrc num-buffers=12 ! video/x-raw,format=GRAY16_LE,width=64,height=48 ! appsink")
    stats = Runner(source, detector, RecordingTracker(), [sink]).run()
    assert stats.frames == 12 and not stats.errors and detector.dtypes == {np.dtype(np.uint16)}


def test_truncated_buffer_is_a_bad_frame_and_the_stream_goes_on():
    from gi.repository import Gst

    source = GStreamerSource("appsrc name=cam format=time caps=video/x-raw,format=GRAY8,width=32,height=24,"
                             "framerate=30/1 ! appsink", live=True)
    good = np.arange(32 * 24, dtype=np.uint32).astype(np.uint8).reshape(24, 32)
    feeder = threading.Thread(target=feed, args=(source.element("cam"), [good, good[:3], good], Gst))
    feeder.start()
    sink = RecordingSink()
    stats = Runner(source, SlowDetector(), RecordingTracker(), [sink]).run()
    feeder.join()
    assert sink.frames == [0, 2] and stats.skipped == {"corrupt": 1} and not stats.errors


def test_bad_pipelines_fail_with_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="nosuchelement"):
        GStreamerSource("videotestsrc ! nosuchelement ! appsink")
    with pytest.raises(UserError, match="exactly one appsink"):
        GStreamerSource("videotestsrc ! fakesink")
    missing = tmp_path / "missing.mkv"
    with pytest.raises(SourceError, match="filesrc.*(not found|No such file)"):
        read_all(GStreamerSource(f"filesrc location={missing} ! decodebin ! videoconvert ! appsink"))
    forced = GStreamerSource("videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=32,height=24 ! "
                             "appsink caps=video/x-raw,format=I420")
    with pytest.raises(SourceError, match="receives I420.*videoconvert"):
        read_all(forced)


def test_stalled_live_pipeline_times_out_and_interrupt_returns_at_once():
    source = GStreamerSource("appsrc name=cam is-live=true caps=video/x-raw,format=GRAY8,width=8,height=8 ! appsink",
                             stall_timeout_s=0.5)
    with pytest.raises(SourceError, match="no frame .* for 0.5 s"):
        read_all(source)
    source = GStreamerSource("appsrc name=cam is-live=true caps=video/x-raw,format=GRAY8,width=8,height=8 ! appsink",
                             stall_timeout_s=60)
    threading.Timer(0.3, source.interrupt).start()
    assert read_all(source) == []


def test_live_pipeline_that_ends_is_reopened_and_reported():
    config = SourceConfig(kind="gstreamer", id="cam", max_frames=25,
                          path="videotestsrc is-live=true num-buffers=10 ! video/x-raw,format=GRAY8,width=32,"
                               "height=24,framerate=200/1 ! appsink")
    config.reconnect.initial_delay_s = 0.05
    source = open_source(config)
    sink = RecordingSink()
    stats = Runner(source, SlowDetector(), RecordingTracker(), [sink], max_frames=25).run()
    assert stats.frames + stats.dropped == 25 and not stats.errors
    assert len(source.outages) == 2 and all(o["recovered"] and o["attempts"] == 1 for o in source.outages)
    assert source.outages[0]["reason"] == "the stream ended"


def test_annotated_video_is_republished_through_appsrc(tmp_path):
    from pipeline.sinks.gstreamer import GStreamerVideoPublisher
    from pipeline.sinks.video import TrackRenderer

    out = tmp_path / "published.raw"
    publisher = GStreamerVideoPublisher(f"appsrc ! videoconvert ! video/x-raw,format=BGR ! filesink location={out}",
                                        fps=25.0, renderer=TrackRenderer(trail_length=5))
    reference = TrackRenderer(trail_length=5)
    rng = np.random.default_rng(0)
    expected = []
    for i in range(8):
        image = rng.integers(0, 4000, (37, 53), dtype=np.uint16)  # 53 * 3 bytes: rows padded on the way in
        result = FrameResult(Frame("cam", i, 0, image), Detections.empty(), Tracks.empty())
        publisher.write(result)
        expected.append(reference.render(result))
    publisher.close()
    stride = (53 * 3 + 3) // 4 * 4
    rows = np.frombuffer(out.read_bytes(), np.uint8).reshape(8, 37, stride)[:, :, :53 * 3]
    assert np.array_equal(rows.reshape(8, 37, 53, 3), np.stack(expected))
    assert publisher.sent == 8 and publisher.dropped == 0


def test_live_republishing_drops_instead_of_blocking_on_a_slow_pipeline():
    import time

    from pipeline.sinks.gstreamer import GStreamerVideoPublisher
    from pipeline.sinks.video import TrackRenderer

    # identity sleeps 50 ms per picture: a receiver far slower than the 30 pictures pushed below.
    publisher = GStreamerVideoPublisher("appsrc ! videoconvert ! identity sleep-time=50000 ! fakesink sync=false",
                                        fps=30.0, renderer=TrackRenderer(5), live=True, eos_timeout_s=0.2)
    image = np.zeros((48, 64), np.uint8)
    started = time.monotonic()
    for i in range(30):
        publisher.write(FrameResult(Frame("cam", i, 0, image), Detections.empty(), Tracks.empty()))
    elapsed = time.monotonic() - started
    publisher.close()
    assert elapsed < 0.5, f"publishing blocked for {elapsed:.2f} s"
    assert publisher.sent + publisher.dropped == 30 and publisher.dropped > 10


def test_annotated_video_and_republishing_draw_each_frame_once(tmp_path, monkeypatch):
    from pipeline.app import run
    from pipeline.config import load_config
    from pipeline.sinks.video import TrackRenderer

    drawn, handed = [], []
    draw, render = TrackRenderer._draw, TrackRenderer.render
    monkeypatch.setattr(TrackRenderer, "_draw", lambda self, result: drawn.append(result.frame.index) or
                        draw(self, result))
    monkeypatch.setattr(TrackRenderer, "render", lambda self, result: handed.append(render(self, result)) or
                        handed[-1])
    published = tmp_path / "published.raw"
    config = load_config(None, [f"outputs.dir={tmp_path}", "runner.progress=false", "source.synthetic.frames=6",
                                "source.synthetic.width=96", "source.synthetic.height=64",
                                f"outputs.gstreamer='appsrc ! videoconvert ! video/x-raw,format=BGR ! filesink "
                                f"location={published}'"])
    summary, stats, _ = run(config)
    assert not stats.errors and summary["frames"] == 6
    assert drawn == list(range(6))  # once per frame for both outputs
    assert len(handed) == 12 and all(a is b for a, b in zip(handed[::2], handed[1::2]))  # both got the same picture
    pictures = np.frombuffer(published.read_bytes(), np.uint8).reshape(6, 64, 96, 3)
    assert np.array_equal(pictures, np.stack(handed[::2]))
    video = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    video.release()
