"""Inference backends behind one Detector protocol (see engines/base.py); ``create_detector`` picks one."""
from __future__ import annotations

from engines.availability import require_installed
from engines.base import Detector
from engines.config import ClassicalConfig, DetectorConfig, OnnxRuntimeConfig, TensorRTConfig, TorchConfig

__all__ = ["ClassicalConfig", "Detector", "DetectorConfig", "OnnxRuntimeConfig", "TensorRTConfig", "TorchConfig",
           "create_detector"]


def create_detector(config: DetectorConfig | None = None) -> Detector:
    """The detector ``config`` describes ('auto' resolved); backends are imported only when used, so a missing
    optional dependency of one backend never breaks the others."""
    config = config or DetectorConfig()
    engine = config.resolved_engine()
    if engine == "classical":
        from engines.classical import ClassicalIrstDetector

        return ClassicalIrstDetector(config.classical, score_threshold=config.score_threshold,
                                     max_detections=config.max_detections)
    if engine == "onnxruntime":
        from engines.onnxruntime_backend import OnnxRuntimeDetector

        return OnnxRuntimeDetector(config.weights, config)
    if engine == "tensorrt":
        require_installed("tensorrt", "tensorrt", "tensorrt")
        from engines.tensorrt_backend import TensorRTDetector

        return TensorRTDetector(config.weights, config)
    if engine == "torch":
        require_installed("torch", "torch", "train")
        from engines.torch_backend import TorchDetector

        return TorchDetector(config.weights, config)
    if engine == "null":
        from engines.null import NullDetector

        return NullDetector()
    raise AssertionError(f"engine {engine!r} is in DetectorConfig.engine but has no backend in create_detector")
