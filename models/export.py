"""Export a Detector to ONNX following the engine contract of engines/onnxruntime_backend.py.

Input ``images`` float32 [N, 1, H, W] (N dynamic; H, W dynamic or fixed), normalised as the metadata_props
``mean``, ``std`` and ``input_scale`` say; outputs ``boxes`` [N, K, 4] (x1, y1, x2, y2, input pixels) and
``scores`` [N, K] after the in-graph decode and per-level top-K (no NMS: the host runs it). Standard ONNX ops
only (opset 17), so the same file feeds ONNX Runtime and TensorRT.
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
    """The engine contract as a module: images [N, 1, H, W] -> (boxes [N, K, 4], scores [N, K])."""

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
            torch.onnx.export(ExportableDetector(detector), (torch.zeros(1, 1, *sample_size),), str(path),
                              input_names=["images"], output_names=["boxes", "scores"], opset_version=OPSET,
                              dynamo=False, dynamic_axes={"images": axes, "boxes": {0: "batch"},
                                                          "scores": {0: "batch"}})
    finally:
        detector.train(was_training)
    model = onnx.load(str(path))
    metadata = {key: repr(float(normalization[key])) for key in ("mean", "std", "input_scale")}
    metadata.update(size_divisor=str(normalization["size_divisor"]), model=detector.config.name)
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path
