"""The `detector:` config section: which engine runs, its weights, post-processing, and per-engine options."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from pipeline.schema import option, require

# Add a backend by extending this Literal and the factory in engines/__init__.py.
EngineName = Literal["auto", "classical", "onnxruntime", "tensorrt", "torch", "null"]
ENGINES_WITH_WEIGHTS = ("onnxruntime", "tensorrt", "torch")
TENSORRT_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ClassicalConfig:
    tophat_lengths_px: list[int] = option(
        [5, 9], "lengths (px, odd, >= 3) of the line structuring elements of the top-hats, one scale each: a scale "
                "keeps targets shorter than its length in every direction; the best scale wins at each pixel")
    peak_threshold: float = option(
        18.0, "a target's peak must exceed this many local clutter levels (RMS of the dark top-hat per tile; pure "
              "sensor noise stays below about 7): lower it for faint targets on clear sky, raise it for fewer "
              "false alarms in broken cloud")
    extent_threshold: float = option(
        4.0, "pixels above this many clutter levels join their nearest peak's blob; blobs with several peaks are "
             "split between them")
    extent_fraction: float = option(
        0.25, "a target is the pixels of its blob above this fraction of its peak (and above extent_threshold), so "
              "that its centroid, box and area hardly depend on its brightness")
    split_min_dip: float = option(
        2.0, "two peaks in one blob are separate targets when the dip between them is at least this many clutter "
             "levels below the lower peak ...")
    split_depth: float = option(
        0.3, "... and at least this fraction of the lower peak (two spots of sigma 1 px, 4 px apart, dip by 0.73; "
             "bumps on one extended object by less)")
    noise_tile_px: int = option(
        32, "side (px) of the tiles on which the clutter level is measured; smaller adapts faster to "
            "non-stationary clutter (cloud edges, horizon), larger is steadier")
    min_area_px: int = option(1, "smallest target (pixels, see extent_fraction)")
    max_area_px: int = option(36, "largest target (pixels, see extent_fraction); bigger blobs are clutter")

    def __post_init__(self):
        require(len(self.tophat_lengths_px) >= 1
                and all(3 <= s <= 63 and s % 2 == 1 for s in self.tophat_lengths_px),
                "tophat_lengths_px", f"must be a non-empty list of odd lengths 3..63 px, got {self.tophat_lengths_px}")
        require(math.isfinite(self.peak_threshold) and self.peak_threshold > 0, "peak_threshold",
                f"must be > 0, got {self.peak_threshold}")
        require(math.isfinite(self.extent_threshold) and 0 < self.extent_threshold <= self.peak_threshold,
                "extent_threshold", f"must be > 0 and at most peak_threshold ({self.peak_threshold}), "
                                    f"got {self.extent_threshold}")
        require(0 <= self.extent_fraction < 1, "extent_fraction", f"must be 0 .. < 1, got {self.extent_fraction}")
        require(math.isfinite(self.split_min_dip) and self.split_min_dip >= 0, "split_min_dip",
                f"must be >= 0, got {self.split_min_dip}")
        require(0 <= self.split_depth < 1, "split_depth", f"must be 0 .. < 1, got {self.split_depth}")
        require(8 <= self.noise_tile_px <= 4096, "noise_tile_px", f"must be 8..4096 px, got {self.noise_tile_px}")
        require(self.min_area_px >= 1, "min_area_px", f"must be at least 1, got {self.min_area_px}")
        require(self.max_area_px >= self.min_area_px, "max_area_px",
                f"must be at least min_area_px ({self.min_area_px}), got {self.max_area_px}")


@dataclass
class OnnxRuntimeConfig:
    intra_op_threads: int = option(0, "threads inside one operator (0: ONNX Runtime's default, one per core)")
    inter_op_threads: int = option(0, "threads running independent operators in parallel (0: ONNX Runtime's default)")

    def __post_init__(self):
        require(self.intra_op_threads >= 0, "intra_op_threads", f"must be >= 0, got {self.intra_op_threads}")
        require(self.inter_op_threads >= 0, "inter_op_threads", f"must be >= 0, got {self.inter_op_threads}")


@dataclass
class TensorRTConfig:
    precision: Literal["fp32", "fp16", "int8"] = option(
        "fp16", "plan precision: 'fp16' (the fastest that needs no calibration), 'fp32', or 'int8'. TensorRT 10 "
                "calibrates int8 on real frames (see calibration); TensorRT 11 is strongly typed and takes fp16 / int8 "
                "from the ONNX (fp16 is converted automatically, int8 needs an ONNX with Q/DQ nodes)")
    max_batch: int = option(
        32, "largest batch the plan's optimisation profile accepts (the profile runs 1 .. max_batch, tuned for "
            "detector.batch_size); larger batches run in chunks")
    input_size: list[int] = option(
        [512, 640], "[height, width]: for an ONNX with dynamic height / width, the largest frame size the plan "
                    "accepts and the one it is tuned for (the network input is this times the model's resize_factor, "
                    "padded); unused for a fixed-size ONNX")
    cache_dir: str = option(
        "~/.cache/irst-track/tensorrt", "folder of built plans, keyed by ONNX hash, TensorRT version, GPU, "
                                        "precision and profile; a plan for another GPU or version is rebuilt")
    workspace_mb: int = option(2048, "most GPU memory (MiB) the builder may use for layer tactics")
    calibration: str | None = option(
        None, "int8 on TensorRT 10: real frames for the entropy calibrator (a video, an image folder or a "
              "MOTChallenge sequence; the same kinds as --source)")
    calibration_frames: int = option(256, "int8: frames read from `calibration` (evenly spread over the source)")

    def __post_init__(self):
        require(self.precision in TENSORRT_PRECISIONS, "precision",
                f"got {self.precision!r}; allowed values: {', '.join(TENSORRT_PRECISIONS)}")
        require(1 <= self.max_batch <= 1024, "max_batch", f"must be 1..1024, got {self.max_batch}")
        require(len(self.input_size) == 2 and all(16 <= s <= 8192 for s in self.input_size), "input_size",
                f"must be [height, width] with each 16..8192 px, got {self.input_size}")
        require(bool(self.cache_dir), "cache_dir", "must name a folder")
        require(64 <= self.workspace_mb <= 1 << 20, "workspace_mb", f"must be 64..1048576, got {self.workspace_mb}")
        require(self.calibration_frames >= 8, "calibration_frames",
                f"must be at least 8, got {self.calibration_frames}")


@dataclass
class TorchConfig:
    device: Literal["auto", "cuda", "cpu"] = option("auto", "where the model runs: 'auto' is cuda when available")
    precision: Literal["auto", "fp32", "fp16"] = option(
        "auto", "network precision: 'auto' is fp16 on CUDA and fp32 on the CPU; the box decoding always runs in "
                "fp32 (fp16 has 0.5 px steps above 512 px); fp16 needs CUDA")
    channels_last: bool = option(True, "CUDA: NHWC memory layout, which tensor-core convolutions prefer")
    cuda_graphs: bool = option(
        True, "CUDA: capture one CUDA graph per input shape (batch, height, width) and replay it, which removes "
              "the per-layer launch cost of small models")
    threads: int = option(0, "CPU: torch intra-op threads (0: torch's default); process-wide, as torch sets it")

    def __post_init__(self):
        require(self.threads >= 0, "threads", f"must be >= 0, got {self.threads}")
        require(not (self.device == "cpu" and self.precision == "fp16"), "precision",
                "fp16 needs device 'cuda' (or 'auto' on a machine with CUDA); use fp32 on the CPU")


@dataclass
class DetectorConfig:
    engine: EngineName = option(
        "auto", "backend: 'classical' (top-hat IRST detector, no weights), 'onnxruntime' (an ONNX model on the "
                "CPU), 'tensorrt' (a plan built from the ONNX, NVIDIA GPU), 'torch' (the torch model, CUDA fp16 "
                "with CUDA graphs, or the CPU), 'null' (no detections; measures the pipeline's own overhead), "
                "'auto' (with weights the fastest available: tensorrt if installed and a GPU is present, else "
                "torch on the GPU when the weights include the torch model, else onnxruntime; without weights "
                "classical)")
    weights: str | None = option(
        None, "model for the engines that need one: a released model folder (model.onnx, model.pt, model.yaml; "
              "see engines/model_files.py), an .onnx (onnxruntime, tensorrt), a TensorRT .plan, or a torch "
              ".pt state dict / train.py checkpoint (torch)")
    score_threshold: float = option(
        0.3, "detections scoring below this are dropped (classical scores are 0.5 at its threshold)")
    nms_iou: float = option(
        0.5, "model engines: of two boxes overlapping more than this IoU only the higher-scoring one is kept")
    max_detections: int = option(100, "most detections kept per frame (the highest-scoring ones)")
    batch_size: int = option(1, "frames per detector call; larger batches raise throughput of model engines and "
                                "add up to runner.max_wait_ms of latency")
    classical: ClassicalConfig = option(ClassicalConfig(), "options of the classical detector")
    onnxruntime: OnnxRuntimeConfig = option(OnnxRuntimeConfig(), "options of the ONNX Runtime engine")
    tensorrt: TensorRTConfig = option(TensorRTConfig(), "options of the TensorRT engine")
    torch: TorchConfig = option(TorchConfig(), "options of the torch engine")

    def __post_init__(self):
        require(self.engine in get_args(EngineName), "engine",
                f"got {self.engine!r}; allowed values: {', '.join(get_args(EngineName))}")
        require(self.weights is None or self.engine in ("auto", *ENGINES_WITH_WEIGHTS), "weights",
                f"is set, but engine '{self.engine}' uses no weights; use engine 'auto' or "
                f"{' / '.join(repr(e) for e in ENGINES_WITH_WEIGHTS)}, or remove the weights")
        require(self.weights is not None or self.engine not in ENGINES_WITH_WEIGHTS, "weights",
                f"engine '{self.engine}' needs a model file: set detector.weights (or --weights)")
        require(0 <= self.score_threshold <= 1, "score_threshold", f"must be 0..1, got {self.score_threshold}")
        require(0 < self.nms_iou <= 1, "nms_iou", f"must be in (0, 1], got {self.nms_iou}")
        require(self.max_detections >= 1, "max_detections", f"must be at least 1, got {self.max_detections}")
        require(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")

    def resolved_engine(self) -> str:
        """The engine that runs. 'auto' without weights is classical; with weights the fastest that can run them
        here: tensorrt (installed, a CUDA GPU, and an ONNX or plan), else torch on a CUDA GPU when the weights
        include the torch model (or on the CPU when they hold nothing else), else onnxruntime."""
        if self.engine != "auto":
            return self.engine
        if not self.weights:
            return "classical"
        from engines.availability import cuda_available, tensorrt_installed
        from engines.model_files import ModelFiles

        files = ModelFiles.find(self.weights)
        if (files.onnx or files.plan) and tensorrt_installed() and cuda_available():
            return "tensorrt"
        if files.state_dict and (files.onnx is None or cuda_available()):
            return "torch"
        return "onnxruntime"
