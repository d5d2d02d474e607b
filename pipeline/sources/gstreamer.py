"""Any GStreamer pipeline ending in an appsink as a frame source (cameras, RTSP, hardware decoders, appsrc feeds).

GRAY8 arrives as uint8, GRAY16_LE as uint16 (16-bit IR keeps its full depth end to end); colour formats are
converted to grey once, here. Each buffer is mapped once; its rows are copied out without their padding, so any
width works.
"""
from __future__ import annotations

import threading
import time
from typing import Iterator

import numpy as np

from pipeline.errors import UserError
from pipeline.sources.base import BadFrame, SourceError, to_grey

# What the appsink accepts when the pipeline gives it no caps of its own; anything else needs a videoconvert.
APPSINK_FORMATS = {"GRAY8": (np.uint8, 1), "GRAY16_LE": (np.dtype("<u2"), 1), "BGR": (np.uint8, 3),
                   "BGRx": (np.uint8, 4), "RGB": (np.uint8, 3), "RGBx": (np.uint8, 4)}
_RGB_ORDER = ("RGB", "RGBx")
_INIT_LOCK = threading.Lock()


def gst_modules():
    """(Gst, GstApp, GstVideo, GLib), initialised once; a clear install hint when PyGObject or GStreamer is missing."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        gi.require_version("GstVideo", "1.0")
        from gi.repository import GLib, Gst, GstApp, GstVideo
    except (ImportError, ValueError) as err:
        raise UserError(f"GStreamer sources and sinks need PyGObject and GStreamer ({err}): pip install "
                        "'irst-track[gstreamer]' and apt-get install gir1.2-gstreamer-1.0 "
                        "gir1.2-gst-plugins-base-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good") from None
    with _INIT_LOCK:
        if not Gst.is_initialized():
            Gst.init(None)
    return Gst, GstApp, GstVideo, GLib


def parse_pipeline(description: str, what: str):
    """Gst.parse_launch with errors (unknown element, bad syntax) turned into a UserError naming the pipeline."""
    Gst, _, _, GLib = gst_modules()
    try:
        pipeline = Gst.parse_launch(description)
    except GLib.Error as err:
        raise UserError(f"{what} {description!r} is not a valid GStreamer pipeline: {err.message} "
                        "(check it with gst-launch-1.0; gst-inspect-1.0 lists the installed elements)") from None
    if not isinstance(pipeline, Gst.Pipeline):  # a single element parses to itself
        bin_ = Gst.Pipeline.new(None)
        bin_.add(pipeline)
        pipeline = bin_
    return pipeline


def find_element(pipeline, factory: str, what: str, description: str):
    """The one element made by ``factory`` (appsink / appsrc) in a parsed pipeline."""
    Gst = gst_modules()[0]
    found = []
    iterator = pipeline.iterate_recurse()
    while True:
        result, element = iterator.next()
        if result != Gst.IteratorResult.OK:
            break
        if element.get_factory() is not None and element.get_factory().get_name() == factory:
            found.append(element)
    if len(found) != 1:
        raise UserError(f"{what} {description!r} must contain exactly one {factory} (found {len(found)}), e.g. "
                        + ("'v4l2src ! videoconvert ! appsink'" if factory == "appsink"
                           else "'appsrc ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4'"))
    return found[0]


def bus_error(pipeline, what: str) -> str | None:
    """The first error posted on the pipeline's bus, as one line naming the element, or None.

    Every other message is discarded on the way: nothing else reads this bus, and unread messages (state changes,
    buffering reports of network sources) would pile up for as long as the stream runs.
    """
    Gst = gst_modules()[0]
    bus = pipeline.get_bus()
    while (message := bus.pop()) is not None and message.type != Gst.MessageType.ERROR:
        pass
    if message is None:
        return None
    err, debug = message.parse_error()
    detail = (debug or "").strip().splitlines()
    return (f"{what}: GStreamer element '{message.src.get_name()}' failed: {err.message}"
            + (f" ({detail[-1].strip()})" if detail else ""))


class GStreamerSource:
    """Frames pulled from the appsink of a user-given pipeline string (``... ! appsink``).

    ``live`` is what the pipeline says about itself (a live source element cannot preroll) unless given. A
    pipeline that delivers no frame for ``stall_timeout_s`` raises a SourceError, so the reconnect wrapper can
    restart a live one; ``interrupt()`` ends a blocked read promptly when the run is stopped.
    """

    def __init__(self, description: str, stream_id: str = "gstreamer", live: bool | None = None,
                 stall_timeout_s: float | None = 10.0, max_buffers: int = 4):
        Gst, _, self._GstVideo, _ = gst_modules()
        self._Gst = Gst
        self.description, self.stream_id, self.stall_timeout_s = description, stream_id, stall_timeout_s
        self.pipeline = parse_pipeline(description, "source pipeline")
        self.appsink = find_element(self.pipeline, "appsink", "source pipeline", description)
        if self.appsink.get_property("caps") is None:
            formats = ", ".join(APPSINK_FORMATS)
            self.appsink.set_property("caps", Gst.Caps.from_string(f"video/x-raw, format=(string){{ {formats} }}"))
        # A few buffers of slack: replay pipelines wait for the reader (backpressure), live ones rarely fill it
        # because the reader pulls continuously and the runner's queue does the counted dropping.
        self.appsink.set_property("max-buffers", max_buffers)
        self.appsink.set_property("drop", False)
        self.appsink.set_property("sync", False)
        self.num_frames = None
        self._interrupted = threading.Event()
        self._first = None
        paused = self.pipeline.set_state(Gst.State.PAUSED)
        if paused == Gst.StateChangeReturn.FAILURE or self.pipeline.set_state(
                Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            message = bus_error(self.pipeline, f"{stream_id}: source pipeline")
            self.close()
            raise SourceError(message or f"{stream_id}: source pipeline {description!r} cannot start")
        self.live = (paused == Gst.StateChangeReturn.NO_PREROLL) if live is None else live

    def element(self, name: str):
        """An element of the pipeline by name (e.g. the appsrc that a test or an application feeds)."""
        element = self.pipeline.get_by_name(name)
        if element is None:
            raise UserError(f"source pipeline {self.description!r} has no element named {name!r}")
        return element

    def interrupt(self) -> None:
        self._interrupted.set()

    def _pull(self):
        """The next sample; None at end of stream or on interrupt; SourceError on a pipeline error or a stall."""
        Gst = self._Gst
        waited_since = time.monotonic()
        while not self._interrupted.is_set():
            sample = self.appsink.try_pull_sample(100 * Gst.MSECOND)
            message = bus_error(self.pipeline, self.stream_id)
            if message:
                raise SourceError(message)
            if sample is not None:
                return sample
            if self.appsink.is_eos():
                return None
            if self.stall_timeout_s and time.monotonic() - waited_since > self.stall_timeout_s:
                raise SourceError(f"{self.stream_id}: no frame from the GStreamer pipeline for "
                                  f"{self.stall_timeout_s:g} s (is the camera or stream still there?)")
        return None

    @property
    def fps(self) -> float:
        """Frame rate from the negotiated caps (waits for the first frame); 30 when the caps give none."""
        if self._first is None:
            self._first = self._pull()
        if self._first is None:
            return 30.0
        info = self._GstVideo.VideoInfo.new_from_caps(self._first.get_caps())
        return info.fps_n / info.fps_d if info.fps_n > 0 and info.fps_d > 0 else 30.0

    def __iter__(self) -> Iterator[np.ndarray | BadFrame]:
        count = 0
        while True:
            sample, self._first = (self._first, None) if self._first is not None else (self._pull(), None)
            if sample is None:
                return
            count += 1
            yield self._to_array(sample, count)

    def _to_array(self, sample, count: int) -> np.ndarray | BadFrame:
        """Copy one sample's pixels into an H x W array (rows unpadded); a short buffer is a BadFrame, not a crash."""
        GstVideo = self._GstVideo
        info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        name = GstVideo.VideoFormat.to_string(info.finfo.format)
        if name not in APPSINK_FORMATS:
            raise SourceError(f"{self.stream_id}: the appsink receives {name}; put 'videoconvert ! "
                              f"video/x-raw,format=GRAY16_LE' (or GRAY8) before the appsink")
        dtype, channels = APPSINK_FORMATS[name]
        buffer = sample.get_buffer()
        meta = GstVideo.buffer_get_video_meta(buffer)
        stride, offset = (meta.stride[0], meta.offset[0]) if meta is not None else (info.stride[0], info.offset[0])
        row_bytes = info.width * channels * np.dtype(dtype).itemsize
        needed = offset + stride * (info.height - 1) + row_bytes
        size = buffer.get_size()
        if size < needed:
            return BadFrame(f"frame {count} is truncated: {size} bytes, but {info.width}x{info.height} {name} "
                            f"needs {needed}")
        ok, mapped = buffer.map(self._Gst.MapFlags.READ)
        if not ok:
            return BadFrame(f"frame {count}: its buffer cannot be read (mapping failed)")
        try:
            # One copy out of the buffer. PyGObject makes it, handing the mapped memory over as bytes of our own, so
            # rows are copied again only to drop their padding; gst-python's overrides lend a view of the buffer
            # instead, valid only until unmap, so then the rows are copied here.
            data = mapped.data
            rows = np.lib.stride_tricks.as_strided(np.frombuffer(data, np.uint8)[offset:],
                                                   shape=(info.height, row_bytes), strides=(stride, 1))
            rows = np.ascontiguousarray(rows) if isinstance(data, bytes) else rows.copy()
        finally:
            buffer.unmap(mapped)
        image = rows.view(dtype).reshape(info.height, info.width, channels)
        if name in _RGB_ORDER:
            image = image[:, :, [2, 1, 0, *range(3, channels)]]
        return to_grey(image.astype(image.dtype.newbyteorder("="), copy=False), f"{self.stream_id} frame {count}")

    def ground_truth(self) -> None:
        return None

    def close(self) -> None:
        self._interrupted.set()
        self.pipeline.set_state(self._Gst.State.NULL)
