"""The frames every engine accepts (2-D uint8 or uint16) and their full-scale values."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pipeline.errors import UserError

FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def check_images(images: Sequence[np.ndarray], engine: str) -> None:
    """Raise UserError naming the first frame that is not a non-empty H x W uint8/uint16 array."""
    for index, image in enumerate(images):
        if not isinstance(image, np.ndarray):
            got = type(image).__name__
        elif image.ndim != 2 or image.dtype not in FULL_SCALE or image.size == 0:
            got = f"an array of shape {image.shape} and dtype {image.dtype}"
        else:
            continue
        raise UserError(f"{engine} detector: frame {index} of the batch is {got}; expected a non-empty H x W uint8 "
                        "or uint16 grey image (sources convert colour to grey once; convert yours the same way)")
