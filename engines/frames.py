"""The frames every engine accepts (2-D uint8 or uint16), their full-scale values, and, for multi-frame models,
each stream's recent frames stacked with its next one (``FrameHistory``)."""
from __future__ import annotations

from collections import deque
from collections.abc import Hashable
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


class FrameHistory:
    """Per stream, the last (``frames`` - 1) x ``spacing`` frames, from which ``stacks`` puts every ``spacing``-th
    before each new frame of that stream: the input [F, H, W] of a multi-frame model (F = ``frames``; frames
    t - (F - 1) s .. t - s, t with s = ``spacing``; oldest first, the key frame last; models/export.py).

    Until a stream has that many earlier frames, the slots reaching back further repeat the oldest frame it has (at
    its first frame, the frame itself), as training does at clip starts (training/sequences.py), so both see the
    same inputs. A change of frame size or pixel type, or of the stream's restart count (a live source that
    reconnected), starts its history over: frames from before are another recording. Frames are kept as they
    arrived (copied, so a caller may reuse its buffers) and all frames of a history have one size, so the engine
    pre-processes a stack as a whole and its F channels share one geometry. Memory: (F - 1) s frames per stream
    id ever seen.
    """

    def __init__(self, frames: int, spacing: int = 1):
        if frames < 1 or spacing < 1:
            raise ValueError(f"FrameHistory needs frames >= 1 and spacing >= 1, got {frames} and {spacing}")
        self.frames, self.spacing = frames, spacing
        self._streams: dict[Hashable, tuple[tuple, deque[np.ndarray]]] = {}

    def stacks(self, images: Sequence[np.ndarray], streams: Sequence[Hashable] | None = None,
               restarts: Sequence[int] | None = None) -> list[np.ndarray]:
        """Each image stacked with its stream's earlier frames, [F, H, W]; then the image joins the history.

        ``streams``: each image's stream id (None: the images are consecutive frames of one stream); ``restarts``:
        each image's stream restart count (None: 0). Images of one stream are taken in order, so a batch may hold
        several consecutive frames of a stream. With F = 1 the images come back as they are.
        """
        if self.frames == 1:
            return list(images)
        streams = [None] * len(images) if streams is None else streams
        restarts = [0] * len(images) if restarts is None else restarts
        if not len(streams) == len(restarts) == len(images):
            raise ValueError(f"FrameHistory.stacks: {len(images)} images, but {len(streams)} stream ids and "
                             f"{len(restarts)} restart counts")
        return [self._push(image, stream, restart) for image, stream, restart in zip(images, streams, restarts)]

    def _push(self, image: np.ndarray, stream: Hashable, restarts: int) -> np.ndarray:
        recording = (image.shape, image.dtype, restarts)
        held = self._streams.get(stream)
        if held is None or held[0] != recording:
            held = self._streams[stream] = (recording, deque(maxlen=(self.frames - 1) * self.spacing))
        earlier = held[1]
        back = range((self.frames - 1) * self.spacing, 0, -self.spacing)  # slots t - (F-1)s .. t - s, in frames
        stack = np.stack([earlier[-step] if step <= len(earlier) else earlier[0] if earlier else image
                          for step in back] + [image])
        earlier.append(image.copy())  # the deque drops its oldest frame
        return stack
