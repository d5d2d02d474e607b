"""Network stream URLs decoded by PyAV, for real: an RTSP server (GStreamer's gst-rtsp-server, in-process) that
goes away and comes back, and 16-bit FFV1 video served over HTTP."""
import functools
import http.server
import shutil
import socket
import subprocess
import threading
import time
from itertools import islice

import cv2
import numpy as np
import pytest

av = pytest.importorskip("av", reason="needs PyAV (pip install 'irst-track[av]')")

from pipeline.errors import UserError  # noqa: E402
from pipeline.sources import SourceConfig, open_source  # noqa: E402
from pipeline.sources.reconnect import ReconnectingSource  # noqa: E402
from simulation import SyntheticScene, SyntheticSceneConfig  # noqa: E402

# The camera: a static SMPTE test card as RTP/JPEG, 30 frames/s.
CAMERA = ("( videotestsrc is-live=true pattern=smpte ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 "
          "! jpegenc ! rtpjpegpay name=pay0 pt=96 )")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RtspCamera:
    """gst-rtsp-server serving CAMERA at rtsp://127.0.0.1:PORT/cam on its own GLib main loop thread."""

    def __init__(self):
        gi = pytest.importorskip("gi", reason="needs PyGObject (pip install 'irst-track[gstreamer]')")
        try:
            gi.require_version("GstRtspServer", "1.0")
            from gi.repository import GLib, GstRtspServer
        except (ImportError, ValueError):
            pytest.skip("needs gst-rtsp-server (apt-get install gir1.2-gst-rtsp-server-1.0)")
        from pipeline.sources.gstreamer import gst_modules

        gst_modules()
        self.GLib, self.GstRtspServer = GLib, GstRtspServer
        self.context = GLib.MainContext.new()
        self.loop = GLib.MainLoop.new(self.context, False)
        threading.Thread(target=self.loop.run, daemon=True).start()
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.server = self.source_id = None

    def start(self):
        server = self.GstRtspServer.RTSPServer.new()
        server.set_address("127.0.0.1")
        server.set_service(str(self.port))
        factory = self.GstRtspServer.RTSPMediaFactory.new()
        factory.set_launch(CAMERA)
        factory.set_shared(True)
        server.get_mount_points().add_factory("/cam", factory)
        self.server, self.source_id = server, server.attach(self.context)

    def _on_loop(self, function):
        done = threading.Event()
        source = self.GLib.idle_source_new()
        source.set_callback(lambda *_: (function(), done.set(), False)[-1])
        source.attach(self.context)
        assert done.wait(5)

    def stop(self):
        """The camera goes away: clients are cut off and the port refuses connections."""
        def cut():
            self.server.client_filter(lambda server, client: self.GstRtspServer.RTSPFilterResult.REMOVE)
            self.context.find_source_by_id(self.source_id).destroy()
        self._on_loop(cut)

    def close(self):
        if self.server is not None:
            self.stop()
        self.loop.quit()


@pytest.fixture
def camera():
    cam = RtspCamera()
    cam.start()
    yield cam
    cam.close()


def reference_card(tmp_path) -> np.ndarray:
    """The test card as jpegenc encodes it, decoded by OpenCV: the independent reference for the RTSP frames."""
    launch = shutil.which("gst-launch-1.0")
    if launch is None:
        pytest.skip("needs gst-launch-1.0 (apt-get install gstreamer1.0-tools)")
    jpeg = tmp_path / "card.jpg"
    subprocess.run([launch, "-q", "videotestsrc", "num-buffers=1", "pattern=smpte", "!",
                    "video/x-raw,format=I420,width=160,height=120", "!", "jpegenc", "!", "filesink",
                    f"location={jpeg}"], check=True, timeout=60)
    return cv2.imread(str(jpeg), cv2.IMREAD_GRAYSCALE)


def test_rtsp_stream_decodes_to_the_camera_picture(camera, tmp_path):
    source = open_source(SourceConfig(kind="auto", path=camera.url, id="cam"))
    try:
        assert isinstance(source, ReconnectingSource) and source.live and source.fps == 30.0
        images = list(islice(source, 10))
    finally:
        source.close()
    assert all(im.shape == (120, 160) and im.dtype == np.uint8 for im in images)
    # The colour bars (the card's bottom strip has random noise that differs from frame to frame).
    diff = np.abs(images[-1][:80].astype(float) - reference_card(tmp_path)[:80].astype(float))
    assert diff.mean() < 1.0 and diff.max() <= 8  # the same JPEG through two decoders


def test_rtsp_camera_that_goes_away_is_reconnected_and_the_outage_reported(camera):
    config = SourceConfig(kind="stream", path=camera.url, id="cam")
    config.reconnect.initial_delay_s, config.reconnect.stall_timeout_s = 0.2, 2.0
    source = open_source(config)
    restarter = threading.Timer(1.5, camera.start)
    frames = frames_after = 0
    deadline = time.monotonic() + 60
    try:
        for _ in source:
            frames += 1
            if frames == 10:
                camera.stop()
                restarter.start()
            if source.outages and source.outages[0]["recovered"]:
                frames_after += 1
            if frames_after == 10 or time.monotonic() > deadline:
                break
    finally:
        source.close()
        restarter.join()
    assert frames_after == 10
    (outage,) = source.outages
    assert outage["recovered"] and outage["attempts"] >= 2  # refused while down, then back
    assert 1.0 < outage["duration_s"] < 30


def test_sixteen_bit_ffv1_over_http_arrives_bit_exact(tmp_path):
    scene = SyntheticScene(SyntheticSceneConfig(width=96, height=72, frames=12, seed=5))
    frames = [scene.frame(i) for i in range(len(scene))]
    clip = tmp_path / "ir.mkv"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 72, "gray16le"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="gray16le")))
        container.mux(stream.encode(None))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/ir.mkv"
        source = open_source(SourceConfig(kind="auto", path=url, live=False))  # a recording: replay, no reconnect
        try:
            images = list(source)
        finally:
            source.close()
    finally:
        server.shutdown()
        server.server_close()
    assert source.stream_id == "127.0.0.1" and source.fps == 25.0
    assert len(images) == 12 and all(im.dtype == np.uint16 for im in images)
    assert all(np.array_equal(a, b) for a, b in zip(images, frames))


def test_unreachable_stream_fails_at_start_with_one_clear_error():
    url = f"rtsp://127.0.0.1:{free_port()}/nothing"
    with pytest.raises(UserError, match="cannot open rtsp://127.0.0.1.*check the address"):
        open_source(SourceConfig(kind="auto", path=url))
