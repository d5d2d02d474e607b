"""Re-publish the annotated video through a user-given GStreamer pipeline that starts with appsrc (RTSP, UDP/RTP,
a hardware encoder, a file): the same picture as annotated.mp4, as BGR frames."""
from __future__ import annotations

import logging

import numpy as np

from pipeline.errors import UserError
from pipeline.sinks.base import FrameResult
from pipeline.sinks.video import TrackRenderer
from pipeline.sources.gstreamer import bus_error, find_element, gst_modules, parse_pipeline

log = logging.getLogger("irst.sinks")


class GStreamerVideoPublisher:
    """Pushes each annotated picture into the pipeline's appsrc, timestamped at ``fps``.

    The appsrc holds at most ``max_buffers`` pictures. For a live source it then drops the oldest (a slow network
    or a stalled receiver never blocks tracking; ``dropped`` counts them); for a replay it waits, like every
    other output of a replay, so a file written this way has every frame.
    """

    def __init__(self, description: str, fps: float, renderer: TrackRenderer, live: bool = False, max_buffers: int = 4,
                 eos_timeout_s: float = 5.0):
        Gst, _, self._GstVideo, _ = gst_modules()
        self._Gst = Gst
        self.description, self.fps, self.max_buffers, self.eos_timeout_s = description, fps, max_buffers, eos_timeout_s
        self.pipeline = parse_pipeline(description, "outputs.gstreamer")
        self.appsrc = find_element(self.pipeline, "appsrc", "outputs.gstreamer", description)
        self.appsrc.set_property("format", Gst.Format.TIME)
        self.appsrc.set_property("max-buffers", max_buffers)
        self.live = live
        if live:
            self.appsrc.set_property("leaky-type", 2)  # GST_APP_LEAKY_TYPE_DOWNSTREAM: drop the oldest queued buffer
        else:
            self.appsrc.set_property("block", True)
        self.renderer = renderer
        self.sent = self.dropped = 0
        self._size: tuple[int, int] | None = None
        self._stride = 0

    def _start(self, width: int, height: int) -> None:
        Gst = self._Gst
        num, den = (int(round(self.fps * 1000)), 1000) if self.fps > 0 else (30, 1)
        caps = Gst.Caps.from_string(f"video/x-raw,format=BGR,width={width},height={height},framerate={num}/{den}")
        self.appsrc.set_property("caps", caps)
        self._stride = self._GstVideo.VideoInfo.new_from_caps(caps).stride[0]  # rows padded to 4 bytes
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            message = bus_error(self.pipeline, "outputs.gstreamer")
            self.pipeline.set_state(Gst.State.NULL)
            raise UserError(message or f"outputs.gstreamer pipeline {self.description!r} cannot start")
        self._size = (width, height)

    def write(self, result: FrameResult) -> None:
        Gst = self._Gst
        picture = self.renderer.render(result)
        height, width = picture.shape[:2]
        if self._size is None:
            self._start(width, height)
        message = bus_error(self.pipeline, "outputs.gstreamer")
        if message:
            raise UserError(message)
        if self.live and self.appsrc.get_property("current-level-buffers") >= self.max_buffers:
            self.dropped += 1  # the appsrc discards its oldest picture to take this one
        else:
            self.sent += 1
        rows = picture.reshape(height, width * 3)
        if self._stride != width * 3:
            rows = np.pad(rows, ((0, 0), (0, self._stride - width * 3)))
        buffer = Gst.Buffer.new_wrapped(rows.tobytes())
        # Timestamps follow the frame index, so frames a live source dropped stay gaps in the published video.
        buffer.pts = int(result.frame.index * Gst.SECOND / self.fps) if self.fps > 0 else Gst.CLOCK_TIME_NONE
        buffer.duration = int(Gst.SECOND / self.fps) if self.fps > 0 else Gst.CLOCK_TIME_NONE
        self.appsrc.emit("push-buffer", buffer)

    def close(self) -> None:
        """Send end-of-stream and wait for it to leave the pipeline, so files are finalised and receivers told."""
        Gst = self._Gst
        if self._size is not None:
            self.appsrc.emit("end-of-stream")
            message = self.pipeline.get_bus().timed_pop_filtered(
                int(self.eos_timeout_s * Gst.SECOND), Gst.MessageType.EOS | Gst.MessageType.ERROR)
            if message is None:
                log.warning("outputs.gstreamer: end of stream not through the pipeline after %g s", self.eos_timeout_s)
            elif message.type == Gst.MessageType.ERROR:
                log.warning("outputs.gstreamer failed while finishing: %s", message.parse_error()[0].message)
        self.pipeline.set_state(Gst.State.NULL)
