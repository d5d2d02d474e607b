"""The datasets a TrainConfig describes: the augmented training set, resized evaluation splits, and grey batches.

Batches hold grey images scaled to [0, 1] ([N, 1, H, W]; [N, k + 1, H, W] for clips with input.previous_frames
k); ``Detector.normalize`` turns them into the network input, exactly as the engines do from the exported model's
metadata, so training and deployment agree. Clips (data.kind 'clips') become DenseSirst-like Samples
(``ClipKeyFrames``), so the same training and test pipelines, transforms and VOC evaluation run on them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import numpy as np

from pipeline.errors import ConfigError, UserError
from training.bag_cp import SkyCopyPaste
from training.batches import Batch, ReferenceTrainingSet, ResizedTestSet, collate
from training.config import DataConfig
from training.densesirst import Annotation, DenseSirst, Sample, read_split
from training.sequences import SPLIT_SUBSETS, ClipSequences, read_clip_split
from training.transforms import (random_crop, random_horizontal_flip, resize_by_factor, resize_keep_ratio,
                                 resize_stretch)


def collate_grey(samples: Sequence[Sample]) -> Batch:
    """collate() with images as grey [N, 1, H, W] in [0, 1]."""
    return collate(samples, mean=(0.0,), std=(255.0,))


class KeepRatioTrainingSet(ReferenceTrainingSet):
    """The reference training pipeline with a keep-ratio resize (padded bottom/right) instead of the stretch."""

    def _load(self, index: int, rng: np.random.Generator) -> Sample:
        sample = resize_keep_ratio(self.dataset[index % len(self.dataset)], self.size)
        return random_horizontal_flip(sample, rng, self.flip_probability)


class KeepRatioTestSet(ResizedTestSet):
    """ResizedTestSet with a keep-ratio resize; ``scale_factor`` still maps predictions back to original pixels."""

    def __getitem__(self, index: int) -> Sample:
        return resize_keep_ratio(self.dataset[index], self.size)


class FactorTrainingSet(ReferenceTrainingSet):
    """data.resize 'factor': flip and BAG-CP at the image's own size, then every side times ``factor``. With
    crop_size, the window is cut first (crop_size / factor) and then resized, which is the same picture as resizing
    the whole image first at a fraction of the cost."""

    def __init__(self, dataset, *, factor: float, **kwargs):
        super().__init__(dataset, **kwargs)
        self.factor = factor

    def _load(self, index: int, rng: np.random.Generator) -> Sample:
        return random_horizontal_flip(self.dataset[index % len(self.dataset)], rng, self.flip_probability)

    def _finish(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if self.crop_size is None:
            return resize_by_factor(sample, self.factor)
        window = tuple(max(1, math.ceil(side / self.factor)) for side in self.crop_size)
        return resize_stretch(random_crop(sample, window, rng), self.crop_size)


class FactorTestSet(ResizedTestSet):
    """data.resize 'factor': every side times ``factor``, padded to a multiple of 32 (batches pad to the largest)."""

    def __init__(self, dataset, factor: float):
        super().__init__(dataset)
        self.factor = factor

    def __getitem__(self, index: int) -> Sample:
        return resize_by_factor(self.dataset[index], self.factor)


class ClipKeyFrames:
    """Key frames of clips as Samples: image [H, W] (k = 0) or [H, W, k + 1] (frames oldest first, key frame last),
    boxes of the key frame (none difficult), no masks, id '<clip>/<1-based frame>'. Like DenseSirst, ground
    truth is ``annotations`` (read without decoding a frame), which training/evaluate.score_split scores against.
    """

    with_masks = False

    def __init__(self, sequences: ClipSequences):
        self.sequences = sequences
        self.annotations = [Annotation(self._image_id(index), boxes, np.zeros(len(boxes), bool), None)
                            for index, (boxes, _) in enumerate(map(sequences.key_boxes, range(len(sequences))))]

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> Sample:
        item = self.sequences[index]
        if item.frames.dtype != np.uint8:
            raise UserError(f"clip {item.clip} has {item.frames.dtype} frames; training reads 8-bit grey frames: "
                            "convert its image folder to 8-bit PNGs or an 8-bit video")
        frames = item.frames[0] if len(item.frames) == 1 else np.ascontiguousarray(item.frames.transpose(1, 2, 0))
        annotation = self.annotations[index]
        return Sample(frames, annotation.boxes, annotation.difficult, None, None, annotation.image_id,
                      item.frames.shape[1:])

    def _image_id(self, index: int) -> str:
        clip_index, key = self.sequences.keys[index]
        return f"{self.sequences.clips[clip_index].name}/{key + 1}"


def clip_key_frames(config: DataConfig, subset: str, previous_frames: int, frame_spacing: int = 1) -> ClipKeyFrames:
    """The key frames of clip_split's ``subset`` ('train' or 'val') with ``previous_frames`` frames before each,
    ``frame_spacing`` apart; the train subset with data.synthetic_clips simulated clips after the real ones."""
    clips = read_clip_split(config.clip_split_path)[subset]
    synthetic = config.synthetic_scenes() if subset == config.train_split else []
    return ClipKeyFrames(ClipSequences(config.clips_root_path, clips, previous_frames, step=config.frame_step,
                                       frame_spacing=frame_spacing, synthetic=synthetic))


def _check_frames(config: DataConfig, previous_frames: int) -> None:
    if config.kind == "densesirst" and previous_frames:
        raise ConfigError("input.previous_frames", f"is {previous_frames}, but DenseSIRST has single images: "
                                                   "train it on clips (data.kind clips) or set it to 0")


def training_set(config: DataConfig, seed: int, with_masks: bool, previous_frames: int = 0,
                 resize_factor: float = 1.0, frame_spacing: int = 1) -> ReferenceTrainingSet:
    """The augmented, repeated train split; ``with_masks`` loads sky and target masks (BAFE head, BAG-CP);
    ``previous_frames`` (the model's input.previous_frames) frames go before each key frame of clips,
    ``frame_spacing`` (input.frame_spacing) apart;
    ``resize_factor`` (the model's input.resize_factor) is the factor of data.resize 'factor'."""
    if config.copy_paste != "off" and not with_masks:
        raise ValueError("BAG-CP needs the masks: call with with_masks=True")
    _check_frames(config, previous_frames)
    kind = {"keep_ratio": KeepRatioTrainingSet, "stretch": ReferenceTrainingSet,
            "factor": partial(FactorTrainingSet, factor=resize_factor)}[config.resize]
    if config.kind == "clips":
        if with_masks:
            raise ConfigError("head.kind", "'bafe' learns sky segmentation and clips have no sky masks: use "
                                           "head.kind fcos for data.kind clips")
        return kind(clip_key_frames(config, config.train_split, previous_frames, frame_spacing), repeats=config.repeats,
                    size=tuple(config.input_size), flip_probability=config.flip_probability, copy_paste=None,
                    seed=seed, crop_size=None if config.crop_size is None else tuple(config.crop_size))
    dataset = DenseSirst(config.root_path, config.train_split, with_masks=with_masks)
    if config.val_split is not None:
        overlap = set(dataset.ids) & set(read_split(config.root_path, config.val_split))
        if overlap:
            raise UserError(f"data.val_split {config.val_split!r} shares {len(overlap)} images with data.train_split "
                            f"{config.train_split!r} (e.g. {sorted(overlap)[0]}): a checkpoint chosen on training "
                            "images is the most over-fitted one; set data.val_split=null or train on train_v2")
    copy_paste = None if config.copy_paste == "off" else SkyCopyPaste(variant=config.copy_paste)
    return kind(dataset, repeats=config.repeats, size=tuple(config.input_size),
                flip_probability=config.flip_probability, copy_paste=copy_paste, seed=seed,
                crop_size=None if config.crop_size is None else tuple(config.crop_size))


def evaluation_set(config: DataConfig, split: str, previous_frames: int = 0,
                   resize_factor: float = 1.0, frame_spacing: int = 1) -> ResizedTestSet:
    """``split`` resized as the network sees it; ground truth in original pixels is ``.dataset.annotations``.
    With data.kind 'clips', ``split`` is a subset of clip_split; ``previous_frames``, ``resize_factor`` and
    ``frame_spacing`` as in training_set."""
    _check_frames(config, previous_frames)
    if config.kind == "clips":
        if split not in SPLIT_SUBSETS:
            raise UserError(f"split {split!r} is not a subset of data.clip_split {config.clip_split}: use one of "
                            f"{', '.join(SPLIT_SUBSETS)}")
        dataset = clip_key_frames(config, split, previous_frames, frame_spacing)
    else:
        dataset = DenseSirst(config.root_path, split, with_masks=False)
    if config.resize == "factor":
        return FactorTestSet(dataset, resize_factor)
    kind = KeepRatioTestSet if config.resize == "keep_ratio" else ResizedTestSet
    return kind(dataset, size=tuple(config.input_size))

