"""MOTChallenge sequence folders: seqinfo.ini, the frames (a video or img1/), and gt/gt.txt when present."""
from __future__ import annotations

import configparser
from pathlib import Path

from pipeline.errors import UserError
from pipeline.evaluation import read_mot_file
from pipeline.sources.images import ImageFolderSource
from pipeline.sources.video import VideoFileSource


def is_mot_sequence(folder: Path) -> bool:
    return (folder / "seqinfo.ini").is_file() or (folder / "gt" / "gt.txt").is_file()


def open_mot_sequence(folder: str | Path) -> VideoFileSource | ImageFolderSource:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"sequence folder not found: {folder}")
    info = configparser.ConfigParser()
    info.read(folder / "seqinfo.ini")
    seq = info["Sequence"] if info.has_section("Sequence") else {}
    name = seq.get("name", folder.name)
    fps = float(seq.get("frameRate", 30))
    gt_path = folder / "gt" / "gt.txt"
    ground_truth = read_mot_file(gt_path, ground_truth=True) if gt_path.is_file() else None
    im_dir = seq.get("imDir", "") or ""
    ext = seq.get("imExt", "")
    video = folder / f"{name}{ext}" if ext.lower() in (".mp4", ".avi", ".mkv", ".mov") else None
    if video is None and not im_dir:
        videos = sorted(folder.glob("*.mp4"))
        video = videos[0] if videos else None
    if video is not None:
        return VideoFileSource(video, stream_id=name, ground_truth=ground_truth)
    frames_dir = folder / (im_dir or "img1")
    if not frames_dir.is_dir():
        raise UserError(f"{folder} has no frames: expected {name}.mp4 or an image folder '{im_dir or 'img1'}'")
    return ImageFolderSource(frames_dir, stream_id=name, fps=fps, ground_truth=ground_truth)
