"""V4L2 cameras (/dev/videoN) read through OpenCV's V4L2 backend: no GStreamer needed.

Grey pixel formats (Y16, Y12, Y10, GREY) are read raw, with OpenCV's conversion to BGR switched off, so 16-bit IR
arrives as uint16 and stays 16-bit end to end (OpenCV would otherwise scale it to 8-bit colour). Other formats
(YUYV, MJPG, ...) are converted to BGR by OpenCV and to grey once, here.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from pipeline.errors import UserError
from pipeline.schema import option, require
from pipeline.sources.base import SourceError, to_grey

log = logging.getLogger("irst.sources")

# FOURCCs that OpenCV hands over as H x W grey (16-bit for Y1x) once CAP_PROP_CONVERT_RGB is off.
RAW_GREY_FORMATS = ("Y16 ", "Y12 ", "Y10 ", "GREY")


@dataclass
class V4l2Config:
    pixel_format: str | None = option(None, "FOURCC to ask the camera for, e.g. Y16 (16-bit grey, most thermal "
                                            "cameras), GREY, YUYV, MJPG; null: the camera's current format. "
                                            "`v4l2-ctl -d /dev/video0 --list-formats-ext` lists what it offers")
    width: int | None = option(None, "frame width to ask for in px, with height (null: the camera's current)")
    height: int | None = option(None, "frame height to ask for in px, with width (null: the camera's current)")
    fps: float | None = option(None, "frame rate to ask for (null: the camera's current)")

    def __post_init__(self):
        fourcc = self.pixel_format
        require(fourcc is None or (1 <= len(fourcc) <= 4 and fourcc.isascii() and fourcc.isprintable()),
                "pixel_format", f"must be a FOURCC of 1-4 characters such as Y16, GREY or YUYV, got {fourcc!r}")
        require((self.width is None) == (self.height is None), "width",
                "set width and height together (the camera is asked for both at once)")
        require(self.width is None or (self.width > 0 and self.height > 0), "width",
                f"width and height must be > 0 px, got {self.width}x{self.height}")
        require(self.fps is None or self.fps > 0, "fps", f"must be > 0 or null, got {self.fps}")


def parse_device(text: str) -> int | str:
    """A camera index ('0') as an int, a device path ('/dev/video0', '/dev/v4l/by-id/...') as it is."""
    return int(text) if text.isdigit() else text


def is_device_path(text: str) -> bool:
    return text.startswith(("/dev/video", "/dev/v4l/"))


def _fourcc_text(value: float) -> str:
    code = int(value)
    return "".join(chr((code >> shift) & 0xFF) for shift in (0, 8, 16, 24))


def _open_error(device: int | str) -> UserError:
    """Why the camera did not open, with every fix worth trying, in one message."""
    path = f"/dev/video{device}" if isinstance(device, int) else device
    if not cv2.videoio_registry.hasBackend(cv2.CAP_V4L2):
        problem = "this OpenCV build has no V4L2 backend (install opencv-python-headless from PyPI)"
    elif not os.path.exists(path):
        problem = f"{path} does not exist (is the camera plugged in? `ls /dev/video*` lists the cameras)"
    elif not os.access(path, os.R_OK | os.W_OK):
        problem = (f"no permission to open {path} (add the user to the 'video' group: "
                   "sudo usermod -aG video $USER, then log in again)")
    else:
        problem = (f"{path} cannot be opened as a V4L2 capture device (not a camera, or another program holds "
                   "it; `ls /dev/video*` lists the cameras, `v4l2-ctl --list-devices` names them)")
    return UserError(f"V4L2 camera {device}: {problem}; or read it through GStreamer instead: --source "
                     f"'v4l2src device={path} ! videoconvert ! video/x-raw,format=GRAY16_LE ! appsink'")


class V4l2Source:
    """Frames of one V4L2 camera. A read that returns nothing (camera unplugged, or silent for OpenCV's select
    timeout, OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT, 10 s by default) raises a SourceError, so the reconnect wrapper
    reopens the camera; ``interrupt()`` ends the stream after the read under way.
    """

    def __init__(self, device: int | str, config: V4l2Config | None = None, stream_id: str | None = None,
                 live: bool = True):
        config = config or V4l2Config()
        self.device, self.live, self.num_frames = device, live, None
        self.stream_id = stream_id or (f"video{device}" if isinstance(device, int) else os.path.basename(device))
        self._interrupted = threading.Event()
        self._capture = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if not self._capture.isOpened():
            self._capture.release()
            raise _open_error(device)
        try:
            self.pixel_format = self._configure(config)
        except BaseException:
            self._capture.release()
            raise
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        self.fps = fps if fps > 0 else 30.0

    def _configure(self, config: V4l2Config) -> str:
        """Ask for the configured format, size and rate; read grey formats raw. Returns the FOURCC in use."""
        capture = self._capture
        if config.pixel_format:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*config.pixel_format.ljust(4)))
        if config.width is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
        if config.fps is not None:
            capture.set(cv2.CAP_PROP_FPS, config.fps)
        fourcc = _fourcc_text(capture.get(cv2.CAP_PROP_FOURCC))
        name = fourcc.strip()
        if config.pixel_format and name != config.pixel_format.strip():
            raise UserError(f"V4L2 camera {self.device} does not deliver pixel format {config.pixel_format} (it "
                            f"gives {name or 'none'}); set source.v4l2.pixel_format to one it offers "
                            f"(`v4l2-ctl -d {self.device} --list-formats-ext` lists them)")
        if fourcc in RAW_GREY_FORMATS:
            capture.set(cv2.CAP_PROP_CONVERT_RGB, 0)
        elif not capture.get(cv2.CAP_PROP_CONVERT_RGB):  # OpenCV cannot turn this format into a picture
            raise UserError(f"V4L2 camera {self.device}: OpenCV cannot decode its pixel format {name!r}; set "
                            "source.v4l2.pixel_format to one it offers among Y16, GREY, YUYV, MJPG")
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if config.width is not None and size != (config.width, config.height):
            log.warning("%s: asked the camera for %dx%d, it delivers %dx%d", self.stream_id, config.width,
                        config.height, *size)
        return name

    def interrupt(self) -> None:
        self._interrupted.set()

    def __iter__(self) -> Iterator[np.ndarray]:
        count = 0
        while not self._interrupted.is_set():
            ok, image = self._capture.read()
            if not ok or image is None:
                if self._interrupted.is_set():
                    return
                raise SourceError(f"{self.stream_id}: no frame from V4L2 camera {self.device} after {count} "
                                  "frames (unplugged, or it stopped sending)")
            count += 1
            yield to_grey(image, f"{self.stream_id} frame {count}")

    def ground_truth(self) -> None:
        return None

    def close(self) -> None:
        self._interrupted.set()
        self._capture.release()
