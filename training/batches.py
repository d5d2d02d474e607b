"""The reference's train and test data pipelines over a DenseSirst split, and the collate that makes torch batches.

Train (reference section 1.4): the split repeated 3 times, each sample stretched to 512x512, flipped with p 0.5, then
BAG-CP with a source drawn uniformly from the repeated set (it may be the same image), itself resized and flipped.
Randomness comes from ``numpy.random.default_rng([seed, epoch, index])``, so a sample is the same in any worker and
any order; call ``set_epoch`` at the start of each epoch to get fresh augmentation.
Test: stretch to 512x512 only; ground truth for evaluation stays in original pixels (``DenseSirst.annotations``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from training.bag_cp import SkyCopyPaste
from training.densesirst import IGNORE, DenseSirst, Sample
from training.transforms import (CAFFE_BGR_MEAN, CAFFE_STD, REFERENCE_SIZE, random_crop, random_horizontal_flip,
                                 resize_stretch, to_model_input)


class ReferenceTrainingSet:
    """Map-style dataset of augmented 512x512 ``Sample``s; ``copy_paste=None`` turns BAG-CP off (ablation row (a)).

    ``crop_size`` (ours; None in the reference) finally cuts a (width, height) window, usually around a target.
    """

    def __init__(self, dataset: DenseSirst, *, repeats: int = 3, size: tuple[int, int] = REFERENCE_SIZE,
                 flip_probability: float = 0.5, copy_paste: SkyCopyPaste | None = SkyCopyPaste(), seed: int = 0,
                 crop_size: tuple[int, int] | None = None):
        if copy_paste is not None and not dataset.with_masks:
            raise ValueError("BAG-CP needs sky and target masks: build the DenseSirst with with_masks=True")
        self.dataset, self.repeats, self.size = dataset, repeats, size
        self.flip_probability, self.copy_paste, self.seed = flip_probability, copy_paste, seed
        self.crop_size = crop_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.repeats * len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample = self._load(index, rng)
        if self.copy_paste is not None:
            source = self._load(int(rng.integers(0, len(self))), rng)
            if source.image.shape != sample.image.shape:  # unresized images: a window of the source's size
                source = random_crop(source, (sample.image.shape[1], sample.image.shape[0]), rng)
            sample = self.copy_paste(sample, source, rng)
        return self._finish(sample, rng)

    def _finish(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """The last step: the crop_size window, if any."""
        return sample if self.crop_size is None else random_crop(sample, self.crop_size, rng)

    def _load(self, index: int, rng: np.random.Generator) -> Sample:
        sample = resize_stretch(self.dataset[index % len(self.dataset)], self.size)
        return random_horizontal_flip(sample, rng, self.flip_probability)


class ResizedTestSet:
    """The reference's test pipeline: each image stretched to ``size``; ``scale_factor`` maps predictions back."""

    def __init__(self, dataset: DenseSirst, size: tuple[int, int] = REFERENCE_SIZE):
        self.dataset, self.size = dataset, size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        return resize_stretch(self.dataset[index], self.size)


@dataclass
class Batch:
    """images float32 [B, C, H, W] normalised; boxes: B float32 tensors [N_i, 4]; sky_masks uint8 [B, H, W] (1 sky,
    0 other, 255 ignore) or None; scale_factors float32 [B, 2] (sx, sy); original_hw int64 [B, 2]."""

    images: torch.Tensor
    boxes: list[torch.Tensor]
    sky_masks: torch.Tensor | None
    scale_factors: torch.Tensor
    original_hw: torch.Tensor
    image_ids: list[str]


def collate(samples: Sequence[Sample], mean: tuple[float, ...] = CAFFE_BGR_MEAN,
            std: tuple[float, ...] = CAFFE_STD) -> Batch:
    """Stack samples into a Batch (normalisation as ``to_model_input``; the reference's by default). Samples of
    different sizes (data.resize 'factor') are padded bottom and right to the largest, as the resizes pad."""
    height = max(sample.image.shape[0] for sample in samples)
    width = max(sample.image.shape[1] for sample in samples)
    with_sky = all(sample.sky_mask is not None for sample in samples)
    return Batch(
        images=torch.from_numpy(np.stack([to_model_input(_pad(sample.image, height, width, 0), mean, std)
                                          for sample in samples])),
        boxes=[torch.from_numpy(np.ascontiguousarray(sample.boxes, np.float32)) for sample in samples],
        sky_masks=torch.from_numpy(np.stack([_pad(sample.sky_mask, height, width, IGNORE) for sample in samples]))
        if with_sky else None,
        scale_factors=torch.tensor([sample.scale_factor for sample in samples], dtype=torch.float32),
        original_hw=torch.tensor([sample.original_hw for sample in samples], dtype=torch.int64),
        image_ids=[sample.image_id for sample in samples],
    )


def _pad(array: np.ndarray, height: int, width: int, fill: int) -> np.ndarray:
    """``array`` [H, W] or [H, W, F] padded bottom and right to (height, width) with ``fill``."""
    if array.shape[:2] == (height, width):
        return array
    pad = [(0, height - array.shape[0]), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad, constant_values=fill)
