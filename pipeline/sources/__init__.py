"""Frame sources: video file, image folder, MOTChallenge sequence, synthetic scene; ``open_source`` picks one."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.errors import ConfigError, UserError
from pipeline.schema import option, require
from pipeline.sources.base import Source, SourceError
from simulation import SyntheticSceneConfig

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".ts")


@dataclass
class SourceConfig:
    kind: Literal["auto", "synthetic", "video", "images", "mot"] = option(
        "synthetic", "what `path` is; 'auto' infers it: a video file, an image folder, or a MOTChallenge sequence folder "
        "(seqinfo.ini or gt/gt.txt inside; evaluated against its ground truth)")
    path: str | None = option(None, "file or folder to read (unused for 'synthetic')")
    live: bool = option(False, "live semantics: when the detector falls behind, drop the oldest queued frame and count "
                               "it, instead of making the reader wait (replay never drops)")
    max_frames: int | None = option(None, "stop after this many frames (null: the whole source)")
    synthetic: SyntheticSceneConfig = option(SyntheticSceneConfig(), "the built-in synthetic scene")

    def __post_init__(self):
        require(self.max_frames is None or self.max_frames > 0, "max_frames", "must be a positive number of frames")
        require(self.kind in ("synthetic", "auto") or self.path is not None, "path",
                f"source kind '{self.kind}' needs a path (e.g. --source FILE_OR_FOLDER)")


def infer_kind(path: Path) -> str:
    from pipeline.sources.mot import is_mot_sequence

    if path.is_dir():
        return "mot" if is_mot_sequence(path) else "images"
    if path.is_file():
        return "video"
    raise UserError(f"source not found: {path} (give an existing video file, image folder or sequence folder)")


def open_source(config: SourceConfig) -> Source:
    kind = config.kind
    if kind == "auto":
        if config.path is None:
            raise ConfigError("source.path", "source kind 'auto' needs a path (e.g. --source FILE_OR_FOLDER)")
        kind = infer_kind(Path(config.path))
    if kind == "synthetic":
        from pipeline.sources.synthetic import SyntheticSource

        return SyntheticSource(config.synthetic, live=config.live)
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
    source.live = config.live
    return source


__all__ = ["Source", "SourceConfig", "SourceError", "open_source"]
