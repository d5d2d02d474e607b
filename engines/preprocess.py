"""Pre-processing of the engine contract (engines/onnxruntime_backend.py): grey uint8 / uint16 frames -> the
normalised float network input [N, F, H, W], batched, on the host (numpy) or on the backend's device (torch). Each
batch item is one frame [H, W] (F = 1) or one stream's stack of frames [F, H, W] (engines/frames.py FrameHistory),
whose frames share one size, so every channel is resized, normalised and padded alike.

Both paths share one geometry (``InputSpec.layout``): per axis, a fixed input size is reached by resizing (bilinear,
pixel centres aligned: cv2.INTER_LINEAR on the host, torch's bilinear with align_corners=False on the device, the
same sampling), a dynamic one is the frame's size times ``resize_factor`` (resized the same way unless 1) and is
padded at the bottom / right with 0 (after normalising) to a multiple of ``size_divisor``; frames of one batch are
padded to the largest; slots past the frames are 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from engines.frames import FULL_SCALE

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BatchLayout:
    """Where each frame goes in the network input: the input's (height, width), each frame's size in it
    (h, w) (resized or not), and the (x, y) factors float64 [N, 2] from input pixels back to frame pixels."""

    height: int
    width: int
    sizes: list[tuple[int, int]]
    scales: np.ndarray


@dataclass(frozen=True)
class InputSpec:
    """What the network input looks like: fixed or dynamic (None) batch, height and width, the scalar
    normalisation x = (pixel / full_scale * input_scale - mean) / std, the frames per input (channels) F, the
    factor frames are resized by along a dynamic axis, and the frames between two of the F input slots."""

    batch: int | None
    height: int | None
    width: int | None
    mean: float = 0.0
    std: float = 1.0
    input_scale: float = 1.0
    size_divisor: int = 32
    frames: int = 1
    resize_factor: float = 1.0
    frame_spacing: int = 1

    def layout(self, shapes: Sequence[tuple[int, int]]) -> BatchLayout:
        sizes = [(self.height or int(h * self.resize_factor + 0.5), self.width or int(w * self.resize_factor + 0.5))
                 for h, w in shapes]
        height = self.height or _round_up(max(h for h, _ in sizes), self.size_divisor)
        width = self.width or _round_up(max(w for _, w in sizes), self.size_divisor)
        scales = np.array([(w0 / w, h0 / h) for (h0, w0), (h, w) in zip(shapes, sizes)], np.float64).reshape(-1, 2)
        return BatchLayout(height, width, sizes, scales)

    def gain_offset(self, dtype: np.dtype) -> tuple[float, float]:
        """(gain, offset) with x = pixel * gain + offset for frames of ``dtype``."""
        return self.input_scale / (FULL_SCALE[np.dtype(dtype)] * self.std), -self.mean / self.std


def prepare_numpy(frames: Sequence[np.ndarray], spec: InputSpec, padded_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The network input float32 [padded_batch, F, H, W] and the per-item scales [len(frames), 2], on the host;
    ``frames``: per batch item a frame [H, W] or a stack [F, H, W] (module docs)."""
    layout = spec.layout([f.shape[-2:] for f in frames])
    batch = np.zeros((padded_batch, spec.frames, layout.height, layout.width), np.float32)
    for index, (item, (h, w)) in enumerate(zip(frames, layout.sizes)):
        gain, offset = spec.gain_offset(item.dtype)
        for channel, frame in enumerate(_as_stack(item, spec)):
            pixels = frame.astype(np.float32)
            if (h, w) != frame.shape:
                pixels = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_LINEAR)
            batch[index, channel, :h, :w] = pixels * gain + offset
    return batch, layout.scales


def prepare_torch(frames: Sequence[np.ndarray], spec: InputSpec, padded_batch: int, device: torch.device,
                  dtype: torch.dtype, out: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """As prepare_numpy, but on ``device`` in ``dtype``: the raw frames are copied there once (grouped by size
    and dtype, one copy per group) and converted, resized and normalised there. ``out`` (a tensor of the right
    shape, e.g. a CUDA graph's static input) is filled instead of a new tensor."""
    import torch
    import torch.nn.functional as F

    layout = spec.layout([f.shape[-2:] for f in frames])
    shape = (padded_batch, spec.frames, layout.height, layout.width)
    batch = out if out is not None else torch.empty(shape, dtype=dtype, device=device)
    if tuple(batch.shape) != shape:
        raise ValueError(f"prepare_torch: out has shape {tuple(batch.shape)}, the batch needs {shape}")
    batch.zero_()
    groups: dict[tuple, list[int]] = {}
    for index, frame in enumerate(frames):
        groups.setdefault((frame.shape, frame.dtype.str), []).append(index)
    pinned = device.type == "cuda"
    for indices in groups.values():
        first = frames[indices[0]]
        host = torch.from_numpy(np.stack([np.ascontiguousarray(_as_stack(frames[i], spec)) for i in indices]))
        if first.dtype == np.uint16:
            host = host.view(torch.int16)  # copied as raw bits; torch's uint16 has few device kernels
        if pinned:
            host = host.pin_memory()
        pixels = host.to(device, non_blocking=pinned)
        pixels = (pixels.to(torch.int32) & 0xFFFF if first.dtype == np.uint16 else pixels).to(torch.float32)
        h, w = layout.sizes[indices[0]]
        if (h, w) != first.shape[-2:]:
            pixels = F.interpolate(pixels, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
        gain, offset = spec.gain_offset(first.dtype)
        target = torch.as_tensor(indices, device=device)
        batch[target, :, :h, :w] = (pixels * gain + offset).to(dtype)
    return batch, layout.scales


def _as_stack(item: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A batch item as its frames [F, H, W] (a view)."""
    stack = item.reshape(-1, *item.shape[-2:])
    if stack.shape[0] != spec.frames:
        raise ValueError(f"a batch item of shape {item.shape} for a model input of {spec.frames} frames")
    return stack


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
