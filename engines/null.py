"""A detector that finds nothing: runs the whole pipeline without inference, to measure its own overhead."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from engines.frames import check_images
from pipeline.types import Detections


class NullDetector:
    name = "null"

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        check_images(images, self.name)
        return [Detections.empty() for _ in images]

    def close(self) -> None:
        pass
