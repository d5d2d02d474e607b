"""Network stream URLs decoded by PyAV, for real: an RTSP server (GStreamer's gst-rtsp-server, in-process) that
goes away and comes back, and 16-bit FFV1 video served over HTTP."""
import functools
import http.server
import shutil
import socket
import subprocess
import sys
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
from tests.conftest import REPO  # noqa: E402

# The camera: a static SMPTE test card as RTP/JPEG, 30 frames/s.
CAMERA = ("( videotestsrc is-live=true pattern=smpte ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 "
          "! jpegenc ! rtpjpegpay name=pay0 pt=96 )")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rtsp_server_modules():
    """(GLib, GstRtspServer), or the test is skipped with what to install."""
    gi = pytest.importorskip("gi", reason="needs PyGObject (pip install 'irst-track[gstreamer]')")
    try:
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, GstRtspServer
    except (ImportError, ValueError):
        pytest.skip("needs gst-rtsp-server (apt-get install gir1.2-gst-rtsp-server-1.0)")
    from pipeline.sources.gstreamer import gst_modules

    gst_modules()
    return GLib, GstRtspServer


class RtspCamera:
    """gst-rtsp-server serving CAMERA at rtsp://127.0.0.1:PORT/cam, its listening socket and every client connection
    served by one GLib main loop thread of its own.

    The server's thread pool gets max-threads=0 so that clients are served on that loop rather than on
    gst-rtsp-server's pooled client threads: gst_rtsp_client_close() (GStreamer 1.22) is not safe against the
    client's own watch, and closing a client from another thread while its thread is reading a request leaves that
    thread spinning on the closed connection until the process exits, printing g_pollable_input_stream_read_nonblocking
    CRITICALs. On one thread a close can only happen between two reads.
    """

    def __init__(self):
        self.GLib, self.GstRtspServer = rtsp_server_modules()
        self.context = self.GLib.MainContext.new()
        self.loop = self.GLib.MainLoop.new(self.context, False)
        self.thread = threading.Thread(target=self.loop.run, name="rtsp-camera", daemon=True)
        self.thread.start()
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.server = self.source = None
        self.media = []

    def start(self):
        server = self.GstRtspServer.RTSPServer.new()
        server.set_address("127.0.0.1")
        server.set_service(str(self.port))
        server.get_thread_pool().set_max_threads(0)  # clients on this loop (see the class docstring)
        factory = self.GstRtspServer.RTSPMediaFactory.new()
        factory.set_launch(CAMERA)
        factory.set_shared(True)
        media = []
        factory.connect("media-configure", lambda factory, medium: media.append(medium))
        server.get_mount_points().add_factory("/cam", factory)
        source = server.create_source(None)
        self.server, self.source, self.media = server, source, media
        source.attach(self.context)

    def _on_loop(self, function):
        """``function()`` run on the loop thread, where the server and its clients live."""
        done, result = threading.Event(), {}

        def call(*_):
            try:
                result["value"] = function()
            except Exception as err:  # re-raised in the caller
                result["error"] = err
            done.set()
            return False

        source = self.GLib.idle_source_new()
        source.set_callback(call)
        source.attach(self.context)
        if not done.wait(5):
            source.destroy()
            raise AssertionError("the RTSP camera's main loop did not answer within 5 s")
        if "error" in result:
            raise result["error"]
        return result["value"]

    @staticmethod
    def _wait_until(condition, what: str, timeout_s: float = 5.0):
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"RTSP camera teardown: {what} after {timeout_s} s")
            time.sleep(0.02)

    def stop(self):
        """The camera goes away: it stops listening (the port refuses connections), closes every client, and returns
        once the server has let go of them all and the media pipeline is down."""
        server, source, media = self.server, self.source, self.media
        self.server = self.source = None
        remove = self.GstRtspServer.RTSPFilterResult.REMOVE

        def cut():
            source.destroy()  # first, so that no client arrives after the sweep
            server.client_filter(lambda server, client: remove)

        self._on_loop(cut)
        self._wait_until(lambda: self._on_loop(lambda: len(server.client_filter(None))) == 0,
                         "clients still connected")
        unprepared = self.GstRtspServer.RTSPMediaStatus.UNPREPARED
        self._wait_until(lambda: all(m.get_status() == unprepared for m in media), "the media pipeline still runs")
        assert source.is_destroyed()

    def close(self):
        """Stop the camera and its loop thread; fails the test when anything outlives it."""
        if self.server is not None:
            self.stop()
        self.loop.quit()
        self.thread.join(5)
        assert not self.thread.is_alive(), "the RTSP camera's main loop thread is still running"


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


def test_rtsp_requests_are_served_on_the_camera_loop_thread(camera):
    """The camera closes clients on its loop thread, so they must be served there too (see RtspCamera)."""
    threads = []
    camera.server.connect("client-connected", lambda server, client: client.connect(
        "options-request", lambda client, context: threads.append(threading.get_ident())))
    with socket.create_connection(("127.0.0.1", camera.port), timeout=5) as sock:
        sock.sendall(f"OPTIONS {camera.url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"RTSP/1.0 200 OK")
        # the server emits options-request after sending its reply, so the reply can arrive first
        deadline = time.monotonic() + 5
        while not threads and time.monotonic() < deadline:
            time.sleep(0.01)
    assert threads == [camera.thread.ident]


def camera_goes_away_mid_stream_and_mid_request():
    """A camera stopped while one client streams (unread) and the server is reading another's request, then cleaned
    up; run by the test below in a process of its own."""
    cam = RtspCamera()
    cam.start()
    source = open_source(SourceConfig(kind="stream", path=cam.url, id="cam"))
    assert len(list(islice(source, 5))) == 5
    with socket.create_connection(("127.0.0.1", cam.port)) as sock:
        # A header line a quarter of a megabyte long, which the server reads a byte at a time for a good while.
        sock.sendall(f"OPTIONS {cam.url} RTSP/1.0\r\nCSeq: 1\r\nX-Padding: ".encode() + b"a" * 2**18)
        time.sleep(0.02)
        cam.close()  # asserts that no client, media pipeline or loop thread is left
    source.close()


def test_rtsp_camera_teardown_leaves_nothing_running_and_logs_no_glib_criticals():
    """A GLib thread left reading a closed client connection prints g_pollable_input_stream_read_nonblocking CRITICALs
    until the process exits; run in a process of its own so that such a leak fails here, not as noise later."""
    rtsp_server_modules()
    script = "from tests.test_live_streams import camera_goes_away_mid_stream_and_mid_request as run; run()"
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    criticals = [line for line in proc.stderr.splitlines() if "CRITICAL" in line]
    rest = "\n".join(line for line in proc.stderr.splitlines() if line.strip() and "CRITICAL" not in line)
    assert proc.returncode == 0 and not criticals, (f"exit status {proc.returncode}, {len(criticals)} CRITICAL lines "
                                                    f"{criticals[:1]}, the rest of stderr:\n{rest[-3000:]}")


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
