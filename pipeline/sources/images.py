"""A folder of still images (png, bmp, tif, jpg) played in natural filename order; 8- and 16-bit kept as they are."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from pipeline.errors import UserError
from pipeline.sources.base import SourceError, to_grey

IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=_natural_key)


class ImageFolderSource:
    live = False

    def __init__(self, folder: str | Path, stream_id: str | None = None, fps: float = 30.0,
                 ground_truth: np.ndarray | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"image folder not found: {self.folder}")
        self.files = list_images(self.folder)
        if not self.files:
            raise UserError(f"no images in {self.folder}: expected files ending in {', '.join(IMAGE_SUFFIXES)}")
        self.stream_id = stream_id or self.folder.name
        self.num_frames = len(self.files)
        self.fps = fps
        self._ground_truth = ground_truth

    def __iter__(self) -> Iterator[np.ndarray]:
        first_shape = None
        for path in self.files:
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise SourceError(f"cannot read image {path}: the file is corrupt or not an image")
            image = to_grey(raw, str(path))
            if first_shape is None:
                first_shape = (image.shape, self.files[0].name)
            elif image.shape != first_shape[0]:
                raise SourceError(
                    f"{path.name} is {image.shape[1]}x{image.shape[0]} but {first_shape[1]} is "
                    f"{first_shape[0][1]}x{first_shape[0][0]}: all images in {self.folder} must have one size")
            yield image

    def ground_truth(self) -> np.ndarray | None:
        return self._ground_truth

    def close(self) -> None:
        pass
