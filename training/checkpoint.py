"""Training checkpoints: everything an exact resume needs, written atomically, read back with clear errors.

A checkpoint is a dict saved with torch.save and read with ``weights_only=True`` (no pickled code runs): model and
optimizer state dicts, the gradient scaler, the iteration, the best validation result so far, the partial epoch's
loss sums, the RNG states of torch, numpy and python, and both configs (model and training) as plain data.
A bare model state dict (e.g. released weights) is accepted wherever only the weights are needed.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.errors import UserError

FORMAT = "irst-train-checkpoint/1"
MAX_KEYS_NAMED = 4


def rng_states() -> dict[str, Any]:
    """The global RNG states of torch (CPU and CUDA), numpy and python, as weights_only-loadable data."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gauss": float(cached_gauss)},
        "python": random.getstate(),
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    state = states["numpy"]
    np.random.set_state((state["kind"], state["keys"].numpy().astype(np.uint32), state["position"],
                         state["has_gauss"], state["cached_gauss"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: Path, contents: dict[str, Any]) -> Path:
    """Write ``contents`` (plus the format tag) to ``path`` via a temporary file, so an interruption never leaves
    a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": FORMAT, **contents}, partial)
    os.replace(partial, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint (or a bare model state dict) from ``path``, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (give a last.pt / best.pt written by train.py train)")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors alike for files it cannot read
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read checkpoint {path}: {reason}; give a .pt file written by train.py") from None
    if not isinstance(contents, dict) or not (contents.get("format") == FORMAT or _is_state_dict(contents)):
        raise UserError(f"{path} is neither a train.py checkpoint nor a model state dict")
    return contents


def is_training_checkpoint(contents: dict[str, Any]) -> bool:
    return contents.get("format") == FORMAT


def load_model_weights(model: nn.Module, contents: dict[str, Any], path: str | Path, model_name: str) -> None:
    """Load the checkpoint's weights into ``model``; a key or shape mismatch (a checkpoint of another
    architecture) is a UserError naming the keys, before anything is loaded."""
    weights = contents["model"] if is_training_checkpoint(contents) else contents
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    mismatched = [f"{key} {tuple(weights[key].shape)} in the checkpoint, {tuple(value.shape)} in the model"
                  for key, value in expected.items() if key in weights and weights[key].shape != value.shape]
    if missing or unexpected or mismatched:
        trained_with = (contents.get("model_config") or {}).get("name") if is_training_checkpoint(contents) else None
        problems = [f"{len(names)} {what} ({'; '.join(names[:MAX_KEYS_NAMED])}"
                    f"{', ...' if len(names) > MAX_KEYS_NAMED else ''})"
                    for what, names in (("missing keys", missing), ("unexpected keys", unexpected),
                                        ("shape mismatches", mismatched)) if names]
        raise UserError(f"checkpoint {path} does not fit the model {model_name!r}"
                        + (f" (it was trained as {trained_with!r})" if trained_with else "") + ": "
                        + ", ".join(problems) + "; pass the config (model:) the checkpoint was trained with")
    model.load_state_dict(weights)


def _is_state_dict(contents: dict) -> bool:
    return bool(contents) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in contents.items())
