"""MOTChallenge-style clip folders as multi-frame samples: a key frame, its k previous frames, the key frame's boxes.

Layout under ``root``, one folder per clip (as ../shared/data/halmstad-ir-dev): ``<clip>/<clip>.mp4`` (or an
``img1/`` image folder), ``seqinfo.ini``, ``gt/gt.txt`` with rows ``frame,id,x,y,w,h,...`` (frame 1-based, boxes
by top-left corner and size; rows whose 7th column is 0 are ignored boxes and dropped, pipeline.evaluation).
Frames are decoded with OpenCV through the pipeline's own sources, a whole clip on first use, and kept in memory
(about 25 MB for 300 frames of 320x256; ``max_cached_clips`` bounds it, dropping the least recently used clip).

Multi-frame samples follow the input order of models (input.previous_frames k, input.frame_spacing s): frames
t - k s, .., t - s, t, oldest first, the key frame last. Slots before the clip's start repeat its first frame,
as an engine does at a stream's start (models/export.py), so training sees what deployment sees.

Simulated clips (``synthetic_clip``: simulation/'s moving target clusters over cloud and terrain clutter, with
exact ground truth) can join the real ones; they are rendered on first use like a video is decoded.

Split by clip, never by frame: neighbouring frames are near-duplicates, so a frame split puts the val set into
training. ``read_clip_split`` reads a fixed clip split (configs/data/halmstad_split.yaml).

Bad input raises one UserError naming the clip and the fix: a missing clip folder, missing or malformed
gt/gt.txt, a video that does not open or decodes to fewer frames than it announces, boxes on frames past its end.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from pipeline.errors import UserError
from pipeline.evaluation import read_mot_file
from pipeline.sources.mot import open_mot_sequence
from simulation import SyntheticScene, SyntheticSceneConfig

SPLIT_SUBSETS = ("train", "val")


@dataclass(slots=True)
class SequenceSample:
    """frames: [k + 1, H, W] grey (uint8, or uint16 from 16-bit image folders), oldest first, key frame last.
    frame_indices: int64 [k + 1], the 0-based clip frame of each slot, s apart (repeats at the clip start).
    boxes: float32 [N, 4] x1, y1, x2, y2 = x, y, x + w, y + h of the key frame's gt rows, in pixels (edges, no
    VOC minus-one); track_ids: int64 [N], the gt identities."""

    frames: np.ndarray
    frame_indices: np.ndarray
    boxes: np.ndarray
    track_ids: np.ndarray
    clip: str

    @property
    def key_index(self) -> int:
        return int(self.frame_indices[-1])


@dataclass(frozen=True, slots=True)
class Clip:
    """One clip: its name, folder, frame count (as its video announces it) and gt rows [M, 6] float64 (frame
    1-based, id, x, y, w, h); a simulated clip has its scene's config instead of a folder."""

    name: str
    folder: Path | None
    num_frames: int
    ground_truth: np.ndarray
    scene: SyntheticSceneConfig | None = None


def read_clip(root: str | Path, name: str) -> Clip:
    """The clip ``root/name``, its ground truth read and checked and its video opened (not decoded)."""
    folder = Path(root) / name
    if not folder.is_dir():
        raise UserError(f"clip folder not found: {folder}; check the data root, or remove {name!r} from the split")
    gt_path = folder / "gt" / "gt.txt"
    if not gt_path.is_file():
        raise UserError(f"clip {name}: no ground truth at {gt_path}; training needs gt/gt.txt (MOTChallenge rows "
                        "frame,id,x,y,w,h,...) in every clip folder")
    ground_truth = read_mot_file(gt_path, ground_truth=True)
    source = open_mot_sequence(folder)
    try:
        num_frames = source.num_frames or len(_decode(source, name))
    finally:
        source.close()
    if len(ground_truth) and ground_truth[:, 0].max() > num_frames:
        raise UserError(f"{gt_path} has boxes on frame {ground_truth[:, 0].max():g} but the clip has {num_frames} "
                        "frames: the gt belongs to another video, or the video is cut short")
    return Clip(name, folder, num_frames, ground_truth)


def synthetic_clip(config: SyntheticSceneConfig) -> Clip:
    """The simulated clip of ``config`` (frames rendered when first read), named 'synthetic-<seed>'."""
    if config.dtype != "uint8":
        raise ValueError(f"synthetic training clips must be uint8 like the videos, got {config.dtype}")
    return Clip(f"synthetic-{config.seed}", None, config.frames, SyntheticScene(config).ground_truth(), config)


def _decode(source, name: str) -> np.ndarray:
    """All frames of an opened source as [T, H, W]."""
    frames = list(source)
    if not frames:
        raise UserError(f"clip {name}: no frame could be decoded; the video is corrupt")
    return np.stack(frames)


class ClipSequences:
    """Map-style dataset over the frames of ``clips`` under ``root``: item i is a ``SequenceSample``.

    Key frames are every ``step``-th frame of each clip (0, step, 2 step, ...), frames without gt rows included
    (they are the negatives); ``previous_frames`` is k and ``frame_spacing`` s. ``synthetic``: simulated clips
    after the real ones (``synthetic_clip``).
    """

    def __init__(self, root: str | Path, clips: list[str], previous_frames: int = 0, step: int = 1,
                 max_cached_clips: int | None = None, frame_spacing: int = 1,
                 synthetic: Sequence[SyntheticSceneConfig] = ()):
        if (previous_frames < 0 or step < 1 or frame_spacing < 1
                or (max_cached_clips is not None and max_cached_clips < 1)):
            raise ValueError(f"need previous_frames >= 0, step >= 1, frame_spacing >= 1 and max_cached_clips >= 1 "
                             f"or None, got {previous_frames}, {step}, {frame_spacing}, {max_cached_clips}")
        if not clips and not synthetic:
            raise UserError(f"no clips to read under {root}: the split lists none")
        self.previous_frames, self.frame_spacing = previous_frames, frame_spacing
        self.max_cached_clips = max_cached_clips
        self.clips = [read_clip(root, name) for name in clips] + [synthetic_clip(scene) for scene in synthetic]
        self.keys = [(clip_index, frame) for clip_index, clip in enumerate(self.clips)
                     for frame in range(0, clip.num_frames, step)]
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> SequenceSample:
        clip_index, key = self.keys[index]
        indices = np.maximum(key - self.frame_spacing * np.arange(self.previous_frames, -1, -1), 0)
        boxes, track_ids = self.key_boxes(index)
        return SequenceSample(self.frames(clip_index)[indices], indices, boxes, track_ids,
                              self.clips[clip_index].name)

    def key_boxes(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``index``'s boxes and track ids (as SequenceSample has them) without decoding a frame."""
        clip_index, key = self.keys[index]
        ground_truth = self.clips[clip_index].ground_truth
        rows = ground_truth[ground_truth[:, 0] == key + 1]
        boxes = np.concatenate([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], axis=1).astype(np.float32)
        return boxes, rows[:, 1].astype(np.int64)

    def frames(self, clip_index: int) -> np.ndarray:
        """All frames [T, H, W] of clip ``clip_index``, decoded on first use and cached."""
        if clip_index in self._cache:
            self._cache.move_to_end(clip_index)
            return self._cache[clip_index]
        clip = self.clips[clip_index]
        if clip.scene is not None:
            scene = SyntheticScene(clip.scene)
            frames = np.stack([scene.frame(index) for index in range(len(scene))])
        else:
            source = open_mot_sequence(clip.folder)
            try:
                frames = _decode(source, clip.name)
            finally:
                source.close()
        if len(frames) < clip.num_frames:
            raise UserError(f"clip {clip.name}: decoded {len(frames)} of the {clip.num_frames} frames its video "
                            f"announces; the video is truncated or corrupt: copy it again or drop the clip")
        self._cache[clip_index] = frames[:clip.num_frames]
        if self.max_cached_clips is not None and len(self._cache) > self.max_cached_clips:
            self._cache.popitem(last=False)
        return self._cache[clip_index]


def read_clip_split(path: str | Path) -> dict[str, list[str]]:
    """A clip split file: {'train': [clip, ...], 'val': [clip, ...]}; no clip may appear twice."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read clip split {path}: {exc}") from None
    if not isinstance(data, dict) or set(data) != set(SPLIT_SUBSETS) or not all(
            isinstance(data[key], list) and all(isinstance(name, str) for name in data[key]) for key in data):
        raise UserError(f"clip split {path} must map exactly the keys {', '.join(SPLIT_SUBSETS)} to lists of clip "
                        "folder names")
    names = data["train"] + data["val"]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"clip split {path}: {', '.join(repeated)} listed more than once (a clip belongs to one "
                        "subset, once)")
    return {key: data[key] for key in SPLIT_SUBSETS}
