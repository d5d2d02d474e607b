"""Synthetic infrared scenes with ground truth (the pipeline's default source, tracker benchmarks, training)."""
from simulation.config import SyntheticSceneConfig
from simulation.detections import degrade_ground_truth
from simulation.scene import SyntheticScene

__all__ = ["SyntheticScene", "SyntheticSceneConfig", "degrade_ground_truth"]
