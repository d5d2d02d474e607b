"""Frame sources: video file, image folder, MOTChallenge sequence, synthetic scene, GStreamer pipeline, network
stream URL, V4L2 camera; ``open_source`` picks one and wraps live streams so they reconnect after an outage."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.errors import ConfigError, UserError
from pipeline.schema import option, require
from pipeline.sources.base import BadFrame, Source, SourceError
from pipeline.sources.reconnect import ReconnectConfig, ReconnectingSource
from pipeline.sources.v4l2 import V4l2Config, V4l2Source, is_device_path, parse_device
from simulation import SyntheticSceneConfig

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".ts")


@dataclass
class SourceConfig:
    kind: Literal["auto", "synthetic", "video", "images", "mot", "gstreamer", "stream", "v4l2"] = option(
        "synthetic", "what `path` is; 'auto' infers it: a video file, an image folder, a MOTChallenge sequence folder "
        "(seqinfo.ini or gt/gt.txt inside; evaluated against its ground truth), a GStreamer pipeline (has a '!'), "
        "a network stream URL (rtsp://, http(s)://, udp://, rtp://, srt://; decoded by PyAV) or a V4L2 camera "
        "(/dev/video*, /dev/v4l/...; read by OpenCV)")
    path: str | None = option(None, "file or folder to read; for 'gstreamer' a pipeline ending in appsink, e.g. "
                                    "'v4l2src ! videoconvert ! video/x-raw,format=GRAY16_LE ! appsink'; for "
                                    "'stream' a URL, e.g. rtsp://camera.local/stream1; for 'v4l2' a camera device, "
                                    "/dev/video0, or its index as a string, '0' (unused for 'synthetic')")
    id: str | None = option(None, "stream name in outputs, logs and track reports (null: the file or folder name, "
                                  "the URL's host, the camera device's name, 'gstreamer' or 'synthetic')")
    live: bool | None = option(None, "live semantics: when the detector falls behind, drop the oldest queued frame "
                                     "and count it, instead of making the reader wait; live streams also reconnect "
                                     "(null: live for URLs, V4L2 cameras and GStreamer pipelines with a live "
                                     "element, else replay)")
    max_frames: int | None = option(None, "stop after this many frames (null: the whole source)")
    reconnect: ReconnectConfig = option(ReconnectConfig(), "what a live source does when it fails or ends")
    synthetic: SyntheticSceneConfig = option(SyntheticSceneConfig(), "the built-in synthetic scene")
    v4l2: V4l2Config = option(V4l2Config(), "format, size and rate asked of a V4L2 camera (kind 'v4l2')")

    def __post_init__(self):
        require(self.max_frames is None or self.max_frames > 0, "max_frames", "must be a positive number of frames")
        require(self.kind in ("synthetic", "auto") or self.path is not None, "path",
                f"source kind '{self.kind}' needs a path (e.g. --source FILE_OR_FOLDER)")
        require(self.kind != "v4l2" or self.path is None or self.path.isdigit() or is_device_path(self.path), "path",
                "a V4L2 camera is a device such as /dev/video0 (or /dev/v4l/by-id/...) or its index such as '0', "
                f"got {self.path!r}")


def infer_kind(text: str) -> str:
    from pipeline.sources.mot import is_mot_sequence
    from pipeline.sources.stream import is_stream_url

    if is_stream_url(text):
        return "stream"
    if "!" in text:
        return "gstreamer"
    if is_device_path(text):
        return "v4l2"
    path = Path(text)
    if path.is_dir():
        return "mot" if is_mot_sequence(path) else "images"
    if path.is_file():
        return "video"
    raise UserError(f"source not found: {path} (give an existing video file, image folder or sequence folder, a "
                    "stream URL, a camera device /dev/videoN or a GStreamer pipeline)")


# Kinds whose live streams can come back after an outage (a file played as live just ends).
RECONNECTABLE_KINDS = ("gstreamer", "stream", "v4l2")


def open_source(config: SourceConfig) -> Source:
    """The configured source; a live stream is wrapped so it reopens after failures (unless reconnect is off)."""
    kind = config.kind
    if kind == "auto":
        if config.path is None:
            raise ConfigError("source.path", "source kind 'auto' needs a path (e.g. --source FILE_OR_FOLDER)")
        kind = infer_kind(config.path)
    source = _open(kind, config)
    if source.live and kind in RECONNECTABLE_KINDS and config.reconnect.enabled:
        return ReconnectingSource(source, lambda: _open(kind, config), config.reconnect)
    return source


def _open(kind: str, config: SourceConfig) -> Source:
    if kind == "synthetic":
        from pipeline.sources.synthetic import SyntheticSource

        return SyntheticSource(config.synthetic, live=bool(config.live), stream_id=config.id or "synthetic")
    if kind == "gstreamer":
        from pipeline.sources.gstreamer import GStreamerSource

        return GStreamerSource(config.path, stream_id=config.id or "gstreamer", live=config.live,
                               stall_timeout_s=config.reconnect.stall_timeout_s)
    if kind == "stream":
        from pipeline.sources.stream import StreamSource

        return StreamSource(config.path, stream_id=config.id, live=config.live is not False,
                            stall_timeout_s=config.reconnect.stall_timeout_s)
    if kind == "v4l2":
        return V4l2Source(parse_device(config.path), config.v4l2, stream_id=config.id, live=config.live is not False)
    path = Path(config.path)
    if not path.exists():
        raise UserError(f"source not found: {path}")
    if kind == "video":
        from pipeline.sources.video import VideoFileSource

        source = VideoFileSource(path)
    elif kind == "images":
        from pipeline.sources.images import ImageFolderSource

        source = ImageFolderSource(path)
    else:
        from pipeline.sources.mot import open_mot_sequence

        source = open_mot_sequence(path)
    source.live = bool(config.live)
    if config.id:
        source.stream_id = config.id
    return source


__all__ = ["BadFrame", "ReconnectConfig", "Source", "SourceConfig", "SourceError", "V4l2Config", "open_source"]
