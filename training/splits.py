"""The datasets a TrainConfig describes: the augmented training set, resized evaluation splits, and grey batches.

Batches hold grey images scaled to [0, 1] ([N, 1, H, W]); ``Detector.normalize`` turns them into the network
input, exactly as the engines do from the exported model's metadata, so training and deployment agree.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.errors import UserError
from training.bag_cp import SkyCopyPaste
from training.batches import Batch, ReferenceTrainingSet, ResizedTestSet, collate
from training.config import DataConfig
from training.densesirst import DenseSirst, Sample, read_split
from training.transforms import random_horizontal_flip, resize_keep_ratio


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


def training_set(config: DataConfig, seed: int, with_masks: bool) -> ReferenceTrainingSet:
    """The augmented, repeated train split; ``with_masks`` loads sky and target masks (BAFE head, BAG-CP)."""
    if config.copy_paste != "off" and not with_masks:
        raise ValueError("BAG-CP needs the masks: call with with_masks=True")
    dataset = DenseSirst(config.root_path, config.train_split, with_masks=with_masks)
    if config.val_split is not None:
        overlap = set(dataset.ids) & set(read_split(config.root_path, config.val_split))
        if overlap:
            raise UserError(f"data.val_split {config.val_split!r} shares {len(overlap)} images with data.train_split "
                            f"{config.train_split!r} (e.g. {sorted(overlap)[0]}): a checkpoint chosen on training "
                            "images is the most over-fitted one; set data.val_split=null or train on train_v2")
    kind = KeepRatioTrainingSet if config.resize == "keep_ratio" else ReferenceTrainingSet
    copy_paste = None if config.copy_paste == "off" else SkyCopyPaste(variant=config.copy_paste)
    return kind(dataset, repeats=config.repeats, size=tuple(config.input_size),
                flip_probability=config.flip_probability, copy_paste=copy_paste, seed=seed,
                crop_size=None if config.crop_size is None else tuple(config.crop_size))


def evaluation_set(config: DataConfig, split: str) -> ResizedTestSet:
    """``split`` resized as the network sees it; ground truth in original pixels is ``.dataset.annotations``."""
    kind = KeepRatioTestSet if config.resize == "keep_ratio" else ResizedTestSet
    return kind(DenseSirst(config.root_path, split, with_masks=False), size=tuple(config.input_size))

