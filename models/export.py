"""Export a Detector to ONNX following the engine contract of engines/onnxruntime_backend.py.

Input ``images`` float32 [N, F, H, W] (F = 1 but for multi-frame models, below; N dynamic; H, W dynamic or
fixed), resized by metadata_props ``resize_factor`` and normalised as ``mean``, ``std`` and ``input_scale`` say;
outputs ``boxes`` [N, K, 4]
(x1, y1, x2, y2, input pixels) and ``scores`` [N, K] after the in-graph decode and per-level top-K (no NMS: the
host runs it). Standard ONNX ops only (opset 17), so the same file feeds ONNX Runtime and TensorRT. Training-only
parts (BP-FPN's DGR) are not in the graph.

Multi-frame models (model input.previous_frames = k > 0):
- ``images`` is float32 [N, F, H, W] with F = k + 1: one stream's frames t - k s, .., t - s, t as channels
  (s: model input.frame_spacing, metadata ``frame_spacing``, absent means 1), oldest first, the key frame t last;
  detections refer to the key frame. Every channel is normalised with the same scalar
  ``mean``, ``std`` and ``input_scale``. metadata_props ``frames`` = F (absent means 1, so single-frame files
  stay as they are); dimension 1 of ``images`` is fixed to F, and TensorRT profiles keep it fixed.
- Every model engine keeps, per stream id, the stream's last k s frames as they arrived (engines/frames.py
  FrameHistory; memory: k s frames per stream) and pre-processes each stack as a whole, so all F channels share one
  resize and padding. The Detector protocol still takes one frame per stream per batch item and batches across
  streams; callers name each frame's stream and restart count (engines/base.py MultiFrameDetector), which the
  runner does whenever the detector's ``frames`` > 1.
- Until a stream has k s earlier frames (its start, after a reconnect, or after a change of frame size or pixel
  type, each of which clears its history) the slots reaching back further repeat the oldest frame it has:
  training does the same at clip starts (training/sequences.py), so both see the same inputs. Frames a live
  source drops under load never enter the history, so the stack then spans a longer time; the frame timestamps
  say by how much.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from models.detector import Detector
from models.postprocess import decode_candidates

OPSET = 17


class ExportableDetector(nn.Module):
    """The engine contract as a module: images [N, F, H, W] -> (boxes [N, K, 4], scores [N, K]); F = frames."""

    def __init__(self, detector: Detector):
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return decode_candidates(self.detector(images), self.detector.config.postprocess)


def export_onnx(detector: Detector, path: str | Path, input_size: tuple[int, int] | None = None) -> Path:
    """Write ``detector`` (in eval mode) to ``path`` as ONNX with the contract's metadata.

    input_size (height, width): a fixed network input, which the engine resizes frames to (the reference runs
    at 512 x 512); None keeps height and width dynamic, so the engine runs frames at their own size, padded to
    a multiple of the metadata's ``size_divisor``.
    """
    import onnx

    path = Path(path)
    normalization = detector.input_normalization
    sample_size = input_size or (4 * normalization["size_divisor"],) * 2
    axes = {0: "batch"} if input_size else {0: "batch", 2: "height", 3: "width"}
    was_training = detector.training
    detector.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
            sample = torch.zeros(1, detector.frames, *sample_size)
            torch.onnx.export(ExportableDetector(detector), (sample,), str(path),
                              input_names=["images"], output_names=["boxes", "scores"], opset_version=OPSET,
                              dynamo=False, dynamic_axes={"images": axes, "boxes": {0: "batch"},
                                                          "scores": {0: "batch"}})
    finally:
        detector.train(was_training)
    model = onnx.load(str(path))
    metadata = {key: repr(float(normalization[key])) for key in ("mean", "std", "input_scale", "resize_factor")}
    metadata.update(size_divisor=str(normalization["size_divisor"]), model=detector.config.name)
    if detector.frames > 1:
        metadata["frames"] = str(detector.frames)
        metadata["frame_spacing"] = str(detector.frame_spacing)
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path
