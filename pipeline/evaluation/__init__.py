"""Accuracy of the pipeline against ground truth: tracking (MOTA, IDF1, HOTA) and detection (Pd, Fa).

Targets are points of a few pixels, so gt and outputs are matched by centre distance (default 5 px), never IoU.
"""
from pipeline.evaluation.detection import evaluate_detections
from pipeline.evaluation.motfile import read_mot_file, write_mot_rows
from pipeline.evaluation.tracking import evaluate_tracking

__all__ = ["evaluate_detections", "evaluate_tracking", "read_mot_file", "write_mot_rows"]
