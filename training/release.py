"""A released model folder (the layout engines/model_files.py reads) from a trained checkpoint.

weights/<name>/ gets model.onnx (the engine contract, dynamic height and width, so the pipeline runs frames at their
own size; checked against torch in ONNX Runtime), model.pt (the bare state dict, for the torch engine and for
evaluation), model.yaml (the model config that builds it), train_config.yaml (the recipe, read by
benchmarks/densesirst_eval.py for the input resize; its ``model`` names the model.yaml beside it, not the
configs/models/ file, which may change after the release) and the run's epoch log and curves. The model card (README.md)
is written by hand from the measured numbers.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml

from models.detector import Detector
from pipeline.schema import to_dict
from training.config import REPO_ROOT, TrainConfig
from training.export import ExportCheck, export_and_check

RUN_FILES = ("log_epochs.csv", "curves.png")


def release_model(detector: Detector, config: TrainConfig, checkpoint: Path, out_dir: Path,
                  frame: np.ndarray) -> ExportCheck:
    """Write the release files into ``out_dir``; ``frame`` is the grey image the ONNX-vs-torch check runs on."""
    out_dir.mkdir(parents=True, exist_ok=True)
    check = export_and_check(detector, out_dir / "model.onnx", None, frame)
    torch.save(detector.state_dict(), out_dir / "model.pt")
    (out_dir / "model.yaml").write_text(yaml.safe_dump(config.model_config(), sort_keys=False))
    recipe = replace(config, model=model_entry(out_dir / "model.yaml"))
    (out_dir / "train_config.yaml").write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False))
    for name in RUN_FILES:
        if (checkpoint.parent / name).is_file():
            shutil.copy2(checkpoint.parent / name, out_dir / name)
    return check


def model_entry(path: Path) -> str:
    """``path`` as TrainConfig.model reads it: from the repository root when inside it, else absolute."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
