"""Network video streams (RTSP, HTTP(S), UDP/RTP, SRT: anything FFmpeg opens) decoded with PyAV.

Grey 8- and 16-bit pixel formats arrive unchanged (uint8 / uint16, e.g. FFV1 or raw gray16le thermal streams);
other formats are converted to 8-bit grey once, here. A packet that does not decode is a BadFrame (skipped and
counted by the runner), not the end of the stream.
"""
from __future__ import annotations

import threading
from typing import Iterator
from urllib.parse import urlsplit

import numpy as np

from pipeline.errors import UserError
from pipeline.sources.base import BadFrame, SourceError

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "rtp", "srt", "tcp")
_NATIVE_GREY = {"gray": np.uint8, "gray16le": np.uint16, "gray16be": np.uint16}


def is_stream_url(text: str) -> bool:
    return urlsplit(text).scheme.lower() in URL_SCHEMES


class StreamSource:
    """Frames of the first video stream at ``url``.

    RTSP goes over TCP (no UDP packet loss, works through NAT) unless the URL's options say otherwise. A stream
    that sends nothing for ``stall_timeout_s`` raises a SourceError, so the reconnect wrapper reopens it; that is
    also the longest a stop request waits on a silent stream.
    """

    def __init__(self, url: str, stream_id: str | None = None, live: bool = True, stall_timeout_s: float = 10.0):
        try:
            import av
        except ImportError:
            raise UserError("network streams need PyAV: pip install 'irst-track[av]'") from None
        self._av = av
        self.url, self.live, self.num_frames = url, live, None
        self.stream_id = stream_id or (urlsplit(url).hostname or "stream")
        options = {"rtsp_transport": "tcp"} if urlsplit(url).scheme.lower().startswith("rtsp") else {}
        try:
            self.container = av.open(url, options=options, timeout=(stall_timeout_s, stall_timeout_s))
        except av.error.FFmpegError as err:
            raise SourceError(f"{self.stream_id}: cannot open {url}: {err.strerror or err} (check the address, "
                              "that the stream is up, and its credentials)") from None
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"{self.stream_id}: {url} has no video stream")
        self.video = self.container.streams.video[0]
        self.video.thread_type = "AUTO"
        rate = self.video.average_rate or self.video.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self._interrupted = threading.Event()

    def interrupt(self) -> None:
        self._interrupted.set()

    def __iter__(self) -> Iterator[np.ndarray | BadFrame]:
        av = self._av
        count = 0
        try:
            for packet in self.container.demux(self.video):
                if self._interrupted.is_set():
                    return
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as err:
                    count += 1
                    yield BadFrame(f"packet {count} does not decode: {err.strerror or err}")
                    continue
                for frame in frames:
                    count += 1
                    yield self._to_array(frame)
        except av.error.FFmpegError as err:  # a timeout, a reset connection, a server that went away
            raise SourceError(f"{self.stream_id}: {self.url} failed after {count} frames: "
                              f"{err.strerror or err}") from None

    @staticmethod
    def _to_array(frame) -> np.ndarray:
        name = frame.format.name
        if name in _NATIVE_GREY:
            return np.ascontiguousarray(frame.to_ndarray()).astype(_NATIVE_GREY[name], copy=False)
        return frame.to_ndarray(format="gray")

    def ground_truth(self) -> None:
        return None

    def close(self) -> None:
        self.container.close()
