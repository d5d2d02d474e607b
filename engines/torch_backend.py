"""torch engine: runs the torch model itself, for NVIDIA GPUs without TensorRT (and on the CPU, e.g. in tests).

What it needs (engines/model_files.py): the state dict (``model.pt``, or a train.py checkpoint) and the model config
that builds the module (``model.yaml`` beside it; a train.py checkpoint carries its own). When the model's ONNX sits
beside them, its input geometry (fixed or dynamic batch / height / width) and normalisation are used, so the torch
and ONNX engines run the same network input; without one the input is dynamic and normalised as the model says.
A multi-frame model (input.previous_frames > 0) keeps each stream's previous frames like every model engine
(engines/frames.py FrameHistory; engines/base.py MultiFrameDetector).

On CUDA the network runs in fp16 (``detector.torch.precision``), channels-last, and through one captured CUDA graph
per input shape; frames are pre-processed on the GPU (engines/preprocess.py). The box decoding (in-graph top-K of the
engine contract) always runs in fp32, and NMS runs on the host in engines/postprocess.py like every model engine.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from engines.config import DetectorConfig
from engines.frames import FrameHistory, check_images
from engines.model_files import ModelFiles
from engines.postprocess import check_raw_outputs, detect_in_chunks
from engines.preprocess import InputSpec, prepare_torch
from models.config import read_model_config
from models.detector import Detector, build_detector
from models.postprocess import decode_candidates
from pipeline.errors import UserError
from pipeline.types import Detections
from training.checkpoint import is_training_checkpoint, load_model_weights, read_checkpoint

MAX_CUDA_GRAPHS = 8  # input shapes kept captured (each holds its activations); the least recently used goes
WARMUP_RUNS = 3  # runs before a capture, on a side stream, so lazy initialisation happens outside the graph


class TorchDetector:
    """The torch model behind the Detector protocol (module docs)."""

    name = "torch"

    def __init__(self, weights: str | Path, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig(engine="torch", weights=str(weights))
        options = self.config.torch
        files = ModelFiles.find(weights)
        if files.state_dict is None:
            raise UserError(f"detector weights {weights}: engine 'torch' needs the torch state dict (model.pt or a "
                            f"train.py checkpoint; found {files.describe()}); see engines/model_files.py")
        self.weights = files.state_dict
        contents = read_checkpoint(self.weights)
        model_config = contents.get("model_config") if is_training_checkpoint(contents) else None
        if model_config is None:
            if files.model_config is None:
                raise UserError(f"detector weights {self.weights}: engine 'torch' needs the model config beside the "
                                f"state dict ({self.weights.with_suffix('.yaml').name}, or model.yaml in a released "
                                "model folder); see engines/model_files.py")
            model_config = read_model_config(files.model_config)
        detector = build_detector(model_config, "model")
        load_model_weights(detector, contents, self.weights, detector.config.name)

        if options.device == "cuda" and not torch.cuda.is_available():
            raise UserError("detector.torch.device is 'cuda' but torch sees no CUDA GPU (torch "
                            f"{torch.__version__}); use device 'auto' or 'cpu'")
        self.device = torch.device("cuda" if options.device != "cpu" and torch.cuda.is_available() else "cpu")
        on_cuda = self.device.type == "cuda"
        if options.precision == "fp16" and not on_cuda:
            raise UserError("detector.torch.precision 'fp16' needs a CUDA GPU; use 'auto' or 'fp32' on the CPU")
        self.dtype = torch.float16 if on_cuda and options.precision != "fp32" else torch.float32
        self.channels_last = on_cuda and options.channels_last
        self.use_graphs = on_cuda and options.cuda_graphs
        if not on_cuda and options.threads:
            torch.set_num_threads(options.threads)
        self.spec = input_spec(files.onnx, detector, self.config)
        self.frames = self.spec.frames
        self.history = FrameHistory(self.frames, self.spec.frame_spacing)
        self.network = DecodedDetector(detector).to(self.device).eval()
        self.network.detector.to(self.dtype)
        if self.channels_last:
            self.network.to(memory_format=torch.channels_last)
        self._graphs: OrderedDict[tuple[int, int, int], CapturedRun] = OrderedDict()

    def detect(self, images: Sequence[np.ndarray], streams: Sequence[str] | None = None,
               restarts: Sequence[int] | None = None) -> list[Detections]:
        """Detections of each frame; ``streams`` and ``restarts`` matter to multi-frame models only
        (engines/base.py MultiFrameDetector)."""
        check_images(images, self.name)
        return detect_in_chunks(self.history.stacks(images, streams, restarts), self.spec.batch or max(len(images), 1),
                                self.spec.batch, self.config, self.infer)

    def infer(self, frames: list[np.ndarray], padded_batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs boxes [padded_batch, K, 4] and scores [padded_batch, K] on the host, and the items'
        scales (pre-processing on the device); ``frames``: frames [H, W] or a multi-frame model's stacks."""
        layout = self.spec.layout([f.shape[-2:] for f in frames])
        key = (padded_batch, layout.height, layout.width)
        with torch.inference_mode():
            if self.use_graphs:
                run = self._graphs.pop(key, None) or CapturedRun(self.network, self._empty_input(key))
                self._graphs[key] = run  # most recently used last
                while len(self._graphs) > MAX_CUDA_GRAPHS:
                    self._graphs.popitem(last=False)
                _, scales = prepare_torch(frames, self.spec, padded_batch, self.device, self.dtype, out=run.input)
                boxes, scores = run.replay()
            else:
                batch, scales = prepare_torch(frames, self.spec, padded_batch, self.device, self.dtype,
                                              out=self._empty_input(key))
                boxes, scores = self.network(batch)
            boxes, scores = boxes.cpu().numpy(), scores.cpu().numpy()
        check_raw_outputs(boxes, scores, padded_batch, str(self.weights))
        return boxes, scores, scales

    def _empty_input(self, key: tuple[int, int, int]) -> torch.Tensor:
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return torch.empty((key[0], self.spec.frames, key[1], key[2]), dtype=self.dtype, device=self.device,
                           memory_format=memory_format)

    def close(self) -> None:
        self._graphs.clear()
        self.network = None


def input_spec(onnx: Path | None, detector: Detector, config: DetectorConfig) -> InputSpec:
    """The ONNX's input geometry and normalisation when the model has one (module docs), else a dynamic input
    normalised as the torch model says; UserError when the two files disagree on the frames per input."""
    if onnx is not None and onnx.is_file():
        from engines.onnxruntime_backend import contract_spec

        spec = contract_spec(onnx, config)
        if (spec.frames, spec.frame_spacing) != (detector.frames, detector.frame_spacing):
            raise UserError(f"{onnx} takes {spec.frames} frames per input, {spec.frame_spacing} apart, but the torch "
                            f"model beside it takes {detector.frames}, {detector.frame_spacing} apart (model "
                            "input.previous_frames + 1, input.frame_spacing): the files are from different models; "
                            "export the ONNX again from this model")
        return spec
    normalization = detector.input_normalization
    return InputSpec(None, None, None, float(normalization["mean"]), float(normalization["std"]),
                     float(normalization["input_scale"]), int(normalization["size_divisor"]), detector.frames,
                     float(normalization["resize_factor"]), detector.frame_spacing)


class DecodedDetector(nn.Module):
    """images [N, F, H, W] (the network's dtype) -> boxes [N, K, 4], scores [N, K] in fp32: the network in its own
    dtype, the decoding and top-K of the engine contract (models/export.py) in fp32."""

    def __init__(self, detector: Detector):
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.detector(images)
        as_float = dataclasses.replace(raw, cls_logits=[t.float() for t in raw.cls_logits],
                                       box_distances=[t.float() for t in raw.box_distances],
                                       centerness_logits=[t.float() for t in raw.centerness_logits])
        return decode_candidates(as_float, self.detector.config.postprocess)


class CapturedRun:
    """One CUDA graph of the network for one input shape: fill ``input`` in place, then ``replay``."""

    def __init__(self, network: nn.Module, static_input: torch.Tensor):
        self.input = static_input.zero_()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                network(self.input)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = network(self.input)

    def replay(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.graph.replay()
        return self.outputs
