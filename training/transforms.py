"""Geometric transforms that map a Sample's image, boxes and masks together, and normalisation to the model input.

Conventions follow mmdet/mmcv as the BAFE-Net reference uses them: bilinear image / nearest mask resize, boxes scaled
per axis and clipped to the resized image, horizontal flip x -> W - x with no -1. A multi-frame image [H, W, F]
(clip samples, training/splits.py) goes through every transform as one image, so all its frames move together.
"""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from training.densesirst import IGNORE, Sample

REFERENCE_SIZE = (512, 512)  # (width, height) the reference stretches every image to
CAFFE_BGR_MEAN = (102.9801, 115.9465, 122.7717)  # reference DetDataPreprocessor: grey repeated to 3 BGR channels
CAFFE_STD = (1.0, 1.0, 1.0)  # pixel values are not divided by 255


def resize_stretch(sample: Sample, size: tuple[int, int] = REFERENCE_SIZE) -> Sample:
    """The reference's ``Resize(scale=size, keep_ratio=False)``: stretch to exactly ``size`` = (width, height)."""
    width, height = size
    return _resize(sample, width, height, pad_to=None, pad_value=0)


def resize_keep_ratio(sample: Sample, size: tuple[int, int] = REFERENCE_SIZE, pad_value: int = 0) -> Sample:
    """Fit inside ``size`` = (width, height) keeping the aspect ratio, then pad bottom and right to ``size``.

    Like mmcv's rescale, each side becomes int(side * scale + 0.5) and scale_factor records the exact per-axis
    ratios. The image is padded with ``pad_value``, the sky mask with 255 (ignored by the loss), the target mask
    with 0; boxes are clipped to the resized content, not the padding.
    """
    height, width = sample.image.shape[:2]
    scale = min(size[0] / width, size[1] / height)
    new_width, new_height = int(width * scale + 0.5), int(height * scale + 0.5)
    return _resize(sample, new_width, new_height, pad_to=size, pad_value=pad_value)


def resize_by_factor(sample: Sample, factor: float, size_divisor: int = 32) -> Sample:
    """Every side times ``factor`` (int(side * factor + 0.5), as mmcv rescales), padded bottom and right to a multiple
    of ``size_divisor`` like ``resize_keep_ratio``: the model input.resize_factor of data.resize 'factor'."""
    height, width = sample.image.shape[:2]
    new_width, new_height = int(width * factor + 0.5), int(height * factor + 0.5)
    padded = (-(-new_width // size_divisor) * size_divisor, -(-new_height // size_divisor) * size_divisor)
    return _resize(sample, new_width, new_height, pad_to=padded, pad_value=0)


def _resize(sample: Sample, new_width: int, new_height: int, pad_to: tuple[int, int] | None,
            pad_value: int) -> Sample:
    height, width = sample.image.shape[:2]
    sx, sy = new_width / width, new_height / height
    boxes = sample.boxes * np.array([sx, sy, sx, sy], np.float32)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, new_width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, new_height)

    def resize(array, interpolation, fill):
        if array is None:
            return None
        out = cv2.resize(array, (new_width, new_height), interpolation=interpolation)
        if pad_to is not None:
            out = cv2.copyMakeBorder(out, 0, pad_to[1] - new_height, 0, pad_to[0] - new_width,
                                     cv2.BORDER_CONSTANT, value=fill)
        return out

    return replace(
        sample,
        image=resize(sample.image, cv2.INTER_LINEAR, pad_value),
        boxes=boxes.astype(np.float32),
        sky_mask=resize(sample.sky_mask, cv2.INTER_NEAREST, IGNORE),
        target_mask=resize(sample.target_mask, cv2.INTER_NEAREST, 0),
        scale_factor=(sample.scale_factor[0] * sx, sample.scale_factor[1] * sy),
    )


def horizontal_flip(sample: Sample) -> Sample:
    """Mirror left-right; a box [x1, x2] becomes [W - x2, W - x1] (mmdet's HorizontalBoxes.flip_, no -1)."""
    width = sample.image.shape[1]
    boxes = sample.boxes.copy()
    boxes[:, 0], boxes[:, 2] = width - sample.boxes[:, 2], width - sample.boxes[:, 0]

    def flip(array):
        return None if array is None else np.ascontiguousarray(array[:, ::-1])

    return replace(sample, image=flip(sample.image), boxes=boxes, sky_mask=flip(sample.sky_mask),
                   target_mask=flip(sample.target_mask), flipped=not sample.flipped)


def random_horizontal_flip(sample: Sample, rng: np.random.Generator, probability: float = 0.5) -> Sample:
    """The reference's ``RandomFlip(0.5)``, horizontal only."""
    return horizontal_flip(sample) if rng.random() < probability else sample


def random_crop(sample: Sample, size: tuple[int, int], rng: np.random.Generator,
                target_probability: float = 0.9) -> Sample:
    """A ``size`` = (width, height) window of the sample, around a random target with ``target_probability``.

    Ours, not the reference: small-target training spends most of its compute on empty sky, so training on windows
    that usually hold a cluster makes each CPU second count more. Boxes whose centre falls outside the window are
    dropped, the others clipped to it. A window larger than the image is padded like ``resize_keep_ratio``.
    """
    height, width = sample.image.shape[:2]
    crop_width, crop_height = size
    if len(sample.boxes) and rng.random() < target_probability:
        box = sample.boxes[rng.integers(len(sample.boxes))]
        centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0 = int(np.clip(centre_x - rng.uniform(0.1, 0.9) * crop_width, 0, max(width - crop_width, 0)))
        y0 = int(np.clip(centre_y - rng.uniform(0.1, 0.9) * crop_height, 0, max(height - crop_height, 0)))
    else:
        x0 = int(rng.integers(0, max(width - crop_width, 0) + 1))
        y0 = int(rng.integers(0, max(height - crop_height, 0) + 1))
    centres = (sample.boxes[:, :2] + sample.boxes[:, 2:]) / 2
    keep = ((centres[:, 0] >= x0) & (centres[:, 0] < x0 + crop_width)
            & (centres[:, 1] >= y0) & (centres[:, 1] < y0 + crop_height))
    boxes = sample.boxes[keep] - np.array([x0, y0, x0, y0], np.float32)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, min(crop_width, width - x0))
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, min(crop_height, height - y0))

    def crop(array, fill):
        if array is None:
            return None
        window = array[y0:y0 + crop_height, x0:x0 + crop_width]
        return cv2.copyMakeBorder(window, 0, crop_height - window.shape[0], 0, crop_width - window.shape[1],
                                  cv2.BORDER_CONSTANT, value=fill)

    return replace(sample, image=crop(sample.image, 0), boxes=boxes.astype(np.float32),
                   difficult=sample.difficult[keep], sky_mask=crop(sample.sky_mask, IGNORE),
                   target_mask=crop(sample.target_mask, 0))


def to_model_input(image: np.ndarray, mean: tuple[float, ...] = CAFFE_BGR_MEAN,
                   std: tuple[float, ...] = CAFFE_STD) -> np.ndarray:
    """Grey uint8 [H, W] -> float32 [C, H, W], C = len(mean): the grey image repeated, minus mean, divided by std.

    The defaults reproduce the reference (3 identical BGR channels, caffe mean, std 1, no BGR->RGB swap); a
    1-channel model passes one mean and one std. Frames [H, W, F] -> [F, H, W], each minus the one mean, over std.
    """
    if len(mean) != len(std):
        raise ValueError(f"mean {mean} and std {std} must have one value per channel")
    mean_array = np.asarray(mean, np.float32)[:, None, None]
    std_array = np.asarray(std, np.float32)[:, None, None]
    planes = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
    return (planes.astype(np.float32) - mean_array) / std_array


def boxes_to_original(boxes: np.ndarray, scale_factor: tuple[float, float]) -> np.ndarray:
    """Map boxes [N, 4] predicted on a resized image back to original pixels (the reference's rescale=True)."""
    sx, sy = scale_factor
    return (np.asarray(boxes, np.float32) / np.array([sx, sy, sx, sy], np.float32)).astype(np.float32)
