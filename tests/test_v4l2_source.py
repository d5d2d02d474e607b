"""V4L2 cameras through OpenCV. No camera (nor v4l2loopback) is available to the tests, so everything around the
device runs against a fake capture put in place of cv2.VideoCapture that behaves as OpenCV's V4L2 backend does:
grey formats arrive as 8-bit BGR unless CONVERT_RGB is switched off, then Y16 is H x W uint16 and GREY uint8.
One test opens a missing device with the real OpenCV."""
import json
import logging
import os
from itertools import islice

import cv2
import numpy as np
import pytest

from pipeline.app import run
from pipeline.config import load_config
from pipeline.errors import ConfigError, UserError
from pipeline.sources import SourceConfig, V4l2Config, open_source
from pipeline.sources.reconnect import ReconnectingSource
from pipeline.sources.v4l2 import V4l2Source

HEIGHT, WIDTH = 24, 32


def fourcc(text: str) -> int:
    return cv2.VideoWriter_fourcc(*text.ljust(4))


def ir_frame(i: int) -> np.ndarray:
    """A 16-bit thermal picture: values well above 255, so 8-bit scaling would show."""
    frame = np.full((HEIGHT, WIDTH), 20_000 + 100 * i, np.uint16)
    frame[5 + i % 10, 7] = 60_000
    return frame


def colour_frame(i: int) -> np.ndarray:
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 30, 100 + i, 200  # B, G, R differ: really colour
    return frame


class Camera:
    """What is plugged in: the formats it offers, its frames, and after how many reads it stops answering."""

    def __init__(self, formats=("Y16 ",), frames=ir_frame, fail_after=None, size=(WIDTH, HEIGHT), fps=30.0,
                 convertible=True):
        self.formats, self.frames, self.fail_after, self.size, self.fps = list(formats), frames, fail_after, size, fps
        self.convertible = convertible  # whether OpenCV can convert the first format to BGR


class FakeCapture:
    """cv2.VideoCapture(device, cv2.CAP_V4L2) for a Camera, with OpenCV's V4L2 property semantics; the camera has
    one size, which it keeps whatever size is asked for (a driver picks the nearest it has)."""

    def __init__(self, camera: Camera | None, device, api):
        self.camera, self.device, self.api = camera, device, api
        self.sets: list[tuple[int, float]] = []
        self.palette = fourcc(camera.formats[0]) if camera else 0
        self.convert_rgb, self.reads, self.released = camera is not None and camera.convertible, 0, False

    def isOpened(self):
        return self.camera is not None

    def set(self, prop, value):
        self.sets.append((prop, value))
        if prop == cv2.CAP_PROP_FOURCC:
            known = [fourcc(f) for f in self.camera.formats]
            self.palette = int(value) if int(value) in known else self.palette
            return int(value) in known
        if prop == cv2.CAP_PROP_CONVERT_RGB:
            self.convert_rgb = bool(value)
        return True

    def get(self, prop):
        width, height = self.camera.size
        return {cv2.CAP_PROP_FOURCC: float(self.palette), cv2.CAP_PROP_CONVERT_RGB: float(self.convert_rgb),
                cv2.CAP_PROP_FRAME_WIDTH: float(width), cv2.CAP_PROP_FRAME_HEIGHT: float(height),
                cv2.CAP_PROP_FPS: self.camera.fps}.get(prop, -1.0)

    def read(self):
        if self.camera.fail_after is not None and self.reads >= self.camera.fail_after:
            return False, None
        frame = self.camera.frames(self.reads)
        self.reads += 1
        if frame.ndim == 2 and self.convert_rgb:  # OpenCV's own conversion: Y16 scaled to 8 bits, then BGR
            frame = cv2.cvtColor((frame >> 8).astype(np.uint8) if frame.dtype == np.uint16 else frame,
                                 cv2.COLOR_GRAY2BGR)
        return True, frame

    def release(self):
        self.released = True


@pytest.fixture
def cameras(monkeypatch):
    """Plug fake cameras in: ``cameras.plug(device, camera)``; ``cameras.opened`` lists every capture made."""

    class Registry:
        def __init__(self):
            self.plugged, self.opened = {}, []

        def plug(self, device, camera):
            self.plugged[device] = camera

        def __call__(self, device, api):
            camera = self.plugged.get(device)
            if isinstance(camera, list):  # what each successive open finds: a Camera, or None while it is away
                camera = camera.pop(0)
            capture = FakeCapture(camera, device, api)
            self.opened.append(capture)
            return capture

    registry = Registry()
    monkeypatch.setattr(cv2, "VideoCapture", registry)
    return registry


def v4l2(path="/dev/video0", **settings) -> SourceConfig:
    return SourceConfig(kind="v4l2", path=path, v4l2=V4l2Config(**settings))


def take(source, n):
    try:
        return list(islice(source, n))
    finally:
        source.close()


@pytest.mark.parametrize("pixel_format", ["Y16", None])  # asked for, or the camera's current format
def test_sixteen_bit_camera_frames_stay_uint16(cameras, pixel_format):
    cameras.plug("/dev/video0", Camera(formats=("YUYV", "Y16 ") if pixel_format else ("Y16 ",)))
    source = open_source(v4l2(pixel_format=pixel_format, width=WIDTH, height=HEIGHT, fps=60))
    assert isinstance(source, ReconnectingSource) and source.live and source.stream_id == "video0"
    images = take(source, 5)
    assert all(im.dtype == np.uint16 and im.shape == (HEIGHT, WIDTH) for im in images)
    assert all(np.array_equal(im, ir_frame(i)) for i, im in enumerate(images))  # bit for bit, not 8-bit scaled
    (capture,) = cameras.opened
    assert capture.api == cv2.CAP_V4L2 and capture.released
    assert (cv2.CAP_PROP_CONVERT_RGB, 0) in capture.sets
    assert {(cv2.CAP_PROP_FRAME_WIDTH, WIDTH), (cv2.CAP_PROP_FRAME_HEIGHT, HEIGHT), (cv2.CAP_PROP_FPS, 60)} <= \
        set(capture.sets)
    assert ((cv2.CAP_PROP_FOURCC, fourcc("Y16")) in capture.sets) == (pixel_format is not None)


def test_grey_8_bit_camera_by_index_is_read_raw(cameras):
    cameras.plug(2, Camera(formats=("GREY",), frames=lambda i: np.full((HEIGHT, WIDTH), i, np.uint8)))
    source = V4l2Source(2)
    images = take(source, 3)
    assert source.stream_id == "video2" and source.pixel_format == "GREY"
    assert [(im.dtype, im.shape, int(im[0, 0])) for im in images] == [(np.uint8, (HEIGHT, WIDTH), i) for i in range(3)]


def test_colour_camera_is_converted_to_grey_once(cameras):
    cameras.plug("/dev/video1", Camera(formats=("YUYV", "MJPG"), frames=colour_frame, fps=25.0))
    source = open_source(v4l2("/dev/video1", pixel_format="MJPG"))
    images = take(source, 4)
    assert source.fps == 25.0
    assert all(im.dtype == np.uint8 and im.ndim == 2 for im in images)
    assert all(np.array_equal(im, cv2.cvtColor(colour_frame(i), cv2.COLOR_BGR2GRAY)) for i, im in enumerate(images))
    assert (cv2.CAP_PROP_CONVERT_RGB, 0) not in cameras.opened[0].sets  # OpenCV decodes MJPG to BGR


def test_read_failure_mid_stream_reconnects_and_the_outage_is_reported(cameras, tmp_path, caplog):
    # Unplugged after 6 frames; the first reopen finds no device, the second the camera back.
    cameras.plug("/dev/video0", [Camera(fail_after=6), None, Camera()])
    config = load_config(None, [f"outputs.dir={tmp_path}", "runner.progress=false", "outputs.video=false",
                                "detector.engine='null'", "source.kind=v4l2", "source.path=/dev/video0",
                                "source.id=thermal", "source.max_frames=12", "runner.queue_size=32",
                                "source.reconnect.initial_delay_s=0.02", "source.v4l2.pixel_format=Y16"])
    with caplog.at_level(logging.WARNING, logger="irst.sources"):
        summary, stats, _ = run(config)
    assert not stats.errors and summary["frames"] == 12 and summary["dropped_frames"] == 0
    (outage,) = json.loads((tmp_path / "summary.json").read_text())["streams"]["thermal"]["outages"]
    assert outage["recovered"] and outage["attempts"] == 2
    assert "no frame from V4L2 camera /dev/video0 after 6 frames" in outage["reason"]
    assert "V4L2 camera /dev/video0" in outage["last_error"] and "ls /dev/video*" in outage["last_error"]
    assert "stream lost" in caplog.text and "stream back" in caplog.text
    assert [c.isOpened() for c in cameras.opened] == [True, False, True]
    assert all(c.released for c in cameras.opened)


def test_stop_during_a_read_ends_the_stream_without_an_outage(cameras):
    cameras.plug("/dev/video0", Camera())
    source = open_source(v4l2())
    images = iter(source)
    next(images)
    source.interrupt()
    assert list(images) == [] and source.outages == []
    source.close()


def test_missing_device_is_one_clear_error_naming_it_and_the_fixes(cameras):
    with pytest.raises(UserError) as err:
        open_source(SourceConfig(kind="auto", path="/dev/video42"))
    message = str(err.value)
    for fragment in ("/dev/video42", "does not exist", "ls /dev/video*", "v4l2src device=/dev/video42"):
        assert fragment in message, message
    assert cameras.opened[0].released


def test_device_without_permission_points_to_the_video_group(cameras, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match=r"no permission to open /dev/null .*'video' group.*v4l2src"):
        V4l2Source("/dev/null")


def test_pixel_format_the_camera_lacks_or_opencv_cannot_decode(cameras):
    cameras.plug("/dev/video0", Camera(formats=("YUYV",)))
    with pytest.raises(UserError, match=r"does not deliver pixel format Y16 \(it gives YUYV\).*v4l2-ctl"):
        open_source(v4l2(pixel_format="Y16"))
    cameras.plug("/dev/video3", Camera(formats=("Y16B",), convertible=False))
    with pytest.raises(UserError, match="cannot decode its pixel format 'Y16B'"):
        open_source(v4l2("/dev/video3"))
    assert all(c.released for c in cameras.opened)


def test_requested_size_the_camera_changes_is_logged(cameras, caplog):
    cameras.plug("/dev/video0", Camera(size=(640, 480), fps=0.0))
    with caplog.at_level(logging.WARNING, logger="irst.sources"):
        source = V4l2Source("/dev/video0", V4l2Config(width=1000, height=700))
    source.close()
    assert "asked the camera for 1000x700, it delivers 640x480" in caplog.text
    assert source.fps == 30.0  # the driver gave no rate


@pytest.mark.parametrize("override, key, fragment", [
    ("source.v4l2.pixel_format=Y16BE", "source.v4l2.pixel_format", "FOURCC of 1-4 characters"),
    ("source.v4l2.width=640", "source.v4l2.width", "width and height together"),
    ("source.v4l2.fps=0", "source.v4l2.fps", "must be > 0"),
    ("source.path=camera0", "source.path", "/dev/video0"),
])
def test_config_is_validated_with_the_key_path(override, key, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["source.kind=v4l2", "source.path='/dev/video0'", override])
    assert err.value.path == key and fragment in str(err.value)


def test_valid_camera_config_loads():
    config = load_config(None, ["source.kind=v4l2", "source.path='0'", "source.v4l2.pixel_format=GREY",
                                "source.v4l2.width=640", "source.v4l2.height=512", "source.v4l2.fps=30"])
    assert (config.source.v4l2.width, config.source.v4l2.height, config.source.v4l2.fps) == (640, 512, 30.0)


def test_real_opencv_on_a_device_that_does_not_exist_fails_clearly():
    missing = "/dev/video97"
    if os.path.exists(missing):
        pytest.skip(f"{missing} exists on this machine")
    with pytest.raises(UserError, match=r"V4L2 camera /dev/video97: /dev/video97 does not exist.*ls /dev/video\*"):
        open_source(SourceConfig(kind="auto", path=missing))
    with pytest.raises(UserError, match=r"V4L2 camera /dev/null: .* cannot be opened as a V4L2 capture device"):
        V4l2Source("/dev/null")
