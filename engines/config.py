"""The `detector:` config section: which engine runs, its weights, post-processing, and per-engine options."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from pipeline.schema import option, require

# Add a backend by extending this Literal and the factory in engines/__init__.py ('tensorrt', 'torch' are next).
EngineName = Literal["auto", "classical", "onnxruntime", "null"]
ENGINES_WITH_WEIGHTS = ("onnxruntime",)


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
class DetectorConfig:
    engine: EngineName = option(
        "auto", "backend: 'classical' (top-hat IRST detector, no weights), 'onnxruntime' (an ONNX model on the "
                "CPU), 'null' (no detections; measures the pipeline's own overhead), 'auto' (onnxruntime when "
                "weights are given, else classical)")
    weights: str | None = option(None, "model file for the engines that need one (ONNX for onnxruntime)")
    score_threshold: float = option(
        0.3, "detections scoring below this are dropped (classical scores are 0.5 at its threshold)")
    nms_iou: float = option(
        0.5, "model engines: of two boxes overlapping more than this IoU only the higher-scoring one is kept")
    max_detections: int = option(100, "most detections kept per frame (the highest-scoring ones)")
    batch_size: int = option(1, "frames per detector call; larger batches raise throughput of model engines and "
                                "add up to runner.max_wait_ms of latency")
    classical: ClassicalConfig = option(ClassicalConfig(), "options of the classical detector")
    onnxruntime: OnnxRuntimeConfig = option(OnnxRuntimeConfig(), "options of the ONNX Runtime engine")

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
        """The engine that runs: 'auto' becomes onnxruntime when weights are given, else classical."""
        if self.engine != "auto":
            return self.engine
        return "onnxruntime" if self.weights else "classical"
