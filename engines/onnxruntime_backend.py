"""ONNX Runtime engine: runs, on the CPU, any ONNX model that follows the engine contract.

Engine contract (what the trainer's export writes; any model that follows it runs here, and later on TensorRT):
- Input ``images``: float32 [N, F, H, W]. Each of N, H, W is either a fixed number or dynamic (symbolic); F, the
  frames per input, is metadata ``frames`` (absent: 1) and dimension 1 is F or dynamic.
- Outputs ``boxes``: float32 [N, K, 4], x1, y1, x2, y2 in the network input's pixels, and ``scores``: float32
  [N, K] confidences in [0, 1], after an in-graph top-K (unused slots score 0). No NMS in the graph:
  the host runs it (engines/postprocess.py) with ``detector.score_threshold``, ``nms_iou`` and ``max_detections``.
- Pre-processing, done by the engine (engines/preprocess.py) from the model's metadata_props (optional string
  entries, parsed as numbers):
      x = (pixel / full_scale * input_scale - mean) / std
  full_scale is the frame dtype's: 255 for uint8, 65535 for uint16. ``input_scale`` (default 1) states the
  pixel range the model was trained on: 1 for images scaled to [0, 1], 255 for raw 8-bit values (mmdet style,
  e.g. mean 102.98 and std 1). ``mean`` defaults to 0, ``std`` to 1.
- Geometry, per axis: a fixed input size different from the frame's is reached by resizing the frame (bilinear,
  cv2.INTER_LINEAR, pixel centres aligned) and boxes are scaled back by frame size / input size; a dynamic size
  is the frame's times metadata ``resize_factor`` (default 1: the frame's own pixels; 2: twice its width and
  height, int(side * factor + 0.5), resized as above), padded at the bottom / right, with 0 after normalisation,
  up to a multiple of ``size_divisor`` (metadata, default 32); frames of one batch are padded to the largest.
  Boxes come back in each frame's pixels (pixel (r, c) covers [c, c+1) x [r, r+1)); boxes centred in the padding
  are dropped, the rest clipped to the frame.
- Batch: a dynamic N runs the whole batch in one call; a fixed N runs chunks of N, the last padded with zeros.
- Multi-frame models (F > 1, models/export.py): each batch item is one stream's frames t - (F-1) s, .., t - s, t as
  channels (s: metadata ``frame_spacing``, absent: 1), oldest first, the key frame t last; detections refer to the
  key frame. The engine keeps each stream's last (F - 1) s frames (engines/frames.py FrameHistory) and
  pre-processes all F like one frame, so they share one geometry; callers name each frame's stream
  (engines/base.py MultiFrameDetector).
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from engines.config import DetectorConfig
from engines.frames import FrameHistory, check_images
from engines.model_files import ModelFiles
from engines.postprocess import check_raw_outputs, detect_in_chunks
from engines.preprocess import InputSpec, prepare_numpy
from pipeline.errors import UserError
from pipeline.types import Detections

CONTRACT = ("input 'images' float32 [N, F, H, W] (F: metadata 'frames', absent 1); outputs 'boxes' float32 "
            "[N, K, 4] (x1, y1, x2, y2 in input pixels) and 'scores' float32 [N, K] (see "
            "engines/onnxruntime_backend.py)")
METADATA_DEFAULTS = {"mean": 0.0, "std": 1.0, "input_scale": 1.0, "size_divisor": 32, "frames": 1,
                     "resize_factor": 1.0, "frame_spacing": 1}


class OnnxRuntimeDetector:
    """The engine contract (module docs) run by an ONNX Runtime CPU session."""

    name = "onnxruntime"

    def __init__(self, weights: str | Path, config: DetectorConfig | None = None):
        import onnxruntime

        self.config = config or DetectorConfig(engine="onnxruntime", weights=str(weights))
        self.weights = ModelFiles.find(weights).onnx or Path(weights)
        if Path(weights).is_dir() and not self.weights.is_file():
            raise UserError(f"detector weights {weights}: the folder holds no model.onnx (a released model folder "
                            "has model.onnx, model.pt and model.yaml; see engines/model_files.py)")
        if not self.weights.is_file():
            raise UserError(f"detector weights not found: {self.weights} (give an .onnx file exported by the "
                            "trainer with --weights or detector.weights)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.config.onnxruntime.intra_op_threads
        options.inter_op_num_threads = self.config.onnxruntime.inter_op_threads
        try:
            self.session = onnxruntime.InferenceSession(str(self.weights), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime raises its own pybind types for every load failure
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"detector weights {self.weights}: not an ONNX model ONNX Runtime can load ({reason}); "
                            "give an .onnx file exported by the trainer") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        mean, std, input_scale, size_divisor, frames, resize_factor, spacing = (
            self._metadata_number(metadata, k) for k in METADATA_DEFAULTS)
        self._check_contract(int(frames))
        batch, _, height, width = (_fixed(dim) for dim in self.session.get_inputs()[0].shape)
        self.spec = InputSpec(batch, height, width, mean, std, input_scale, int(size_divisor), int(frames),
                              resize_factor, int(spacing))
        self.frames = self.spec.frames
        self.history = FrameHistory(self.frames, self.spec.frame_spacing)

    @property
    def fixed_size(self) -> tuple[int | None, int | None]:
        """The model's fixed input (height, width); None for a dynamic axis."""
        return self.spec.height, self.spec.width

    def _fail(self, problem: str) -> UserError:
        return UserError(f"detector weights {self.weights} do not follow the engine contract: {problem}; "
                         f"expected {CONTRACT}")

    def _check_contract(self, frames: int) -> None:
        inputs, outputs = self.session.get_inputs(), {o.name: o for o in self.session.get_outputs()}
        if [i.name for i in inputs] != ["images"]:
            listed = ", ".join(f"'{i.name}' {i.shape}" for i in inputs)
            raise self._fail(f"the model's inputs are {listed}, not exactly one named 'images'")
        images = inputs[0]
        if images.type != "tensor(float)" or len(images.shape) != 4 or _fixed(images.shape[1]) not in (None, frames):
            raise self._fail(f"input 'images' is {images.type} {images.shape}, for {frames} frames per input by its "
                             "metadata 'frames' (absent: 1)")
        missing = [name for name in ("boxes", "scores") if name not in outputs]
        if missing:
            raise self._fail(f"no output named {' or '.join(repr(m) for m in missing)} (outputs: "
                             f"{', '.join(outputs) or 'none'})")
        for name, rank in (("boxes", 3), ("scores", 2)):
            shape = outputs[name].shape  # None when ONNX Runtime cannot infer it: checked on the first batch
            if shape is not None and (len(shape) != rank or name == "boxes" and _fixed(shape[2]) not in (None, 4)):
                raise self._fail(f"output '{name}' has shape {shape}")

    def _metadata_number(self, metadata: dict[str, str], key: str) -> float:
        """A pre-processing constant from the model's metadata_props (module docs), or its default."""
        text = metadata.get(key)
        if text is None:
            return float(METADATA_DEFAULTS[key])
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        whole = math.isfinite(value) and value >= 1 and value == int(value)
        valid = math.isfinite(value) and {"mean": True, "std": value > 0, "input_scale": value > 0,
                                          "size_divisor": whole, "frames": whole, "frame_spacing": whole,
                                          "resize_factor": 0.25 <= value <= 4}[key]
        if not valid:
            raise UserError(f"detector weights {self.weights}: metadata '{key}' = {text!r} is not valid (mean: a "
                            "number; std and input_scale: a number > 0; size_divisor, frames and frame_spacing: a "
                            "whole number >= 1; resize_factor: 0.25..4)")
        return value

    def detect(self, images: Sequence[np.ndarray], streams: Sequence[str] | None = None,
               restarts: Sequence[int] | None = None) -> list[Detections]:
        """Detections of each frame; ``streams`` and ``restarts`` matter to multi-frame models only
        (engines/base.py MultiFrameDetector)."""
        check_images(images, self.name)
        return detect_in_chunks(self.history.stacks(images, streams, restarts), self.spec.batch or max(len(images), 1),
                                self.spec.batch, self.config, self._infer)

    def _infer(self, frames: list[np.ndarray], padded_batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch, scales = self.prepare(frames, padded_batch=padded_batch)
        return *self._run(batch), scales

    def prepare(self, frames: list[np.ndarray], padded_batch: int) -> tuple[np.ndarray, np.ndarray]:
        """The network input float32 [padded_batch, F, H, W] for ``frames`` (frames [H, W], or stacks [F, H, W] of
        a multi-frame model) and, per item, the (x, y) factors float64 [len(frames), 2] that take network-input
        pixels back to frame pixels (module docs)."""
        return prepare_numpy(frames, self.spec, padded_batch)

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            boxes, scores = self.session.run(["boxes", "scores"], {"images": batch})
        except Exception as err:  # shape mismatches inside the graph surface here
            raise UserError(f"detector weights {self.weights}: ONNX Runtime failed on a batch of shape "
                            f"{list(batch.shape)}: {str(err).strip().splitlines()[0]}") from None
        check_raw_outputs(boxes, scores, batch.shape[0], str(self.weights))
        return boxes, scores

    def close(self) -> None:
        self.session = None


def contract_spec(onnx: Path, config: DetectorConfig) -> InputSpec:
    """The ONNX's input specification, after checking it follows the engine contract (the other engines read their
    input geometry and normalisation from the same file this way)."""
    reference = OnnxRuntimeDetector(onnx, replace(config, engine="onnxruntime", weights=str(onnx)))
    spec = reference.spec
    reference.close()
    return spec


def _fixed(dim) -> int | None:
    """A dimension ONNX Runtime reports: its size when fixed, None when dynamic (a name, None or not positive)."""
    return dim if isinstance(dim, int) and dim > 0 else None
