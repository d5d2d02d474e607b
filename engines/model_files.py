"""Where each engine finds its part of a model: the layout of a released model and of loose files.

A released model is a folder, ``weights/<name>/``:
    model.onnx   the engine contract (engines/onnxruntime_backend.py): ONNX Runtime runs it, TensorRT builds from it
    model.pt     the torch state dict of the same weights (the torch engine)
    model.yaml   the model config (the `model:` mapping of models/config.py) that builds the torch module
    README.md    the model card
Loose files work too: ``x.onnx``, ``x.pt`` and ``x.yaml`` side by side are one model (``--weights`` may name any of
them); a train.py checkpoint (``best.pt``) carries its own model config, so it needs no ``.yaml``. A TensorRT plan
(``.plan`` / ``.engine``) is run as it is, with the sidecar ``.json`` the builder writes next to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RELEASE_STEM = "model"
SUFFIXES = {"onnx": (".onnx",), "state_dict": (".pt", ".pth"), "model_config": (".yaml", ".yml"),
            "plan": (".plan", ".engine")}


@dataclass(frozen=True)
class ModelFiles:
    """The files of one model; None where it has none. The named file itself is kept even when it does not exist,
    so that the engine that needs it reports it missing."""

    onnx: Path | None = None
    state_dict: Path | None = None
    model_config: Path | None = None
    plan: Path | None = None

    @classmethod
    def find(cls, weights: str | Path) -> ModelFiles:
        weights = Path(weights).expanduser()
        folder, stem = (weights, RELEASE_STEM) if weights.is_dir() else (weights.parent, weights.stem)
        found = {}
        for kind, suffixes in SUFFIXES.items():
            if not weights.is_dir() and weights.suffix.lower() in suffixes:
                found[kind] = weights
                continue
            found[kind] = next((folder / (stem + s) for s in suffixes if (folder / (stem + s)).is_file()), None)
        return cls(**found)

    def describe(self) -> str:
        listed = [f"{kind} {path}" for kind, path in vars(self).items() if path is not None]
        return ", ".join(listed) or "no model files"
