"""The trainer's config (configs/train/*.yaml): YAML validated into typed sections, with `--set key.path=value`.

Relative paths in ``model``, ``data.root``, ``data.clips_root`` and ``data.clip_split`` are read from the
repository root, so a config works from any working directory; the run folder (``output.dir``) is relative to
the current directory, like run_pipeline.py's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


from models.config import read_model_config
from pipeline.config import load_config_file
from pipeline.schema import option, require
from simulation import SyntheticSceneConfig
from training.sequences import SPLIT_SUBSETS

REPO_ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_CLIP_FRAMES = 300  # per simulated training clip (data.synthetic_clips)


@dataclass
class DataConfig:
    kind: Literal["densesirst", "clips"] = option(
        "densesirst", "'densesirst': single images (root, *_split); 'clips': MOTChallenge clips (clips_root, "
                      "clip_split), each key frame with the model's input.previous_frames before it, for BP-FPN; "
                      "clips have no sky masks, so copy_paste must be 'off' and the head 'fcos'")
    root: str = option(
        "../shared/data/densesirst/SIRSTdevkit",
        "DenseSIRST SIRSTdevkit folder (PNGImages/, SIRST/, SkySeg/, Splits/); relative to the repo root")
    train_split: str = option("train_v2", "split trained on: train_v2 (val_v2 then selects the checkpoint) or "
                                          "trainval_v2 (the reference; set val_split null); with kind 'clips' "
                                          "a subset of clip_split: 'train'")
    val_split: str | None = option(
        "val_v2", "split evaluated after training epochs to pick best.pt (null: none; use last.pt); it must "
                  "share no image with train_split; with kind 'clips': 'val'")
    test_split: str = option("test_v2", "split reported once per released model (train.py evaluate --split); "
                                        "with kind 'clips' a subset of clip_split ('val': there is no test subset)")
    clips_root: str = option("../shared/data/halmstad-ir-dev",
                             "kind 'clips': folder of MOTChallenge clip folders (<clip>/<clip>.mp4 or img1/, "
                             "gt/gt.txt, seqinfo.ini); relative to the repo root")
    clip_split: str = option("configs/data/halmstad_split.yaml",
                             "kind 'clips': YAML mapping 'train' and 'val' to clip folder names (split by clip, "
                             "never by frame); relative to the repo root")
    frame_step: int = option(5, "kind 'clips': every frame_step-th frame of each clip is a key frame (a sample), "
                                "in training and validation; neighbouring frames are near-duplicates")
    synthetic_clips: int = option(
        0, "kind 'clips': this many simulated clips join the train subset (the val subset stays real): "
           "simulation/'s default scene (3 clusters of 8-12 targets at 0.5-3 px/frame over cloud and terrain "
           f"clutter) at input_size, {SYNTHETIC_CLIP_FRAMES} 8-bit frames, seeds 1..N (seed 0 is the pipeline's "
           "demo scene, kept out of training)")
    input_size: list[int] = option([512, 512], "network input [width, height] in pixels (multiples of 32)")
    resize: Literal["stretch", "keep_ratio", "factor"] = option(
        "stretch", "'stretch': every image to exactly input_size (the reference); 'keep_ratio': fit inside it, pad "
                   "bottom/right; 'factor': every image times the model's input.resize_factor (as the engines "
                   "resize frames), padded to a multiple of 32; input_size is then unused")
    copy_paste: Literal["reference", "paper", "off"] = option(
        "reference", "BAG-CP: 'reference' (the code: 5 targets per 25 px window), 'paper' (1-3 windows of 8-12 "
                     "targets), 'off'")
    crop_size: list[int] | None = option(
        None, "ours (null in the reference): train on [width, height] windows of the resized, pasted image, 9 in "
              "10 centred near a target; evaluation still sees whole images (multiples of 32)")
    repeats: int = option(3, "passes over train_split per epoch (the reference: 3)")
    flip_probability: float = option(0.5, "probability of a horizontal flip")

    def __post_init__(self):
        require(len(self.input_size) == 2 and all(32 <= s <= 4096 and s % 32 == 0 for s in self.input_size),
                "input_size", f"must be [width, height], each a multiple of 32 in 32..4096, got {self.input_size}")
        require(self.crop_size is None or (len(self.crop_size) == 2 and all(
            32 <= c <= s and c % 32 == 0 for c, s in zip(self.crop_size, self.input_size))), "crop_size",
            f"must be null or [width, height], multiples of 32 no larger than input_size {self.input_size}, got "
            f"{self.crop_size}")
        require(self.repeats >= 1, "repeats", f"must be at least 1, got {self.repeats}")
        require(0 <= self.flip_probability <= 1, "flip_probability", f"must be 0..1, got {self.flip_probability}")
        require(self.frame_step >= 1, "frame_step", f"must be at least 1, got {self.frame_step}")
        require(self.synthetic_clips >= 0 and (self.kind == "clips" or not self.synthetic_clips), "synthetic_clips",
                f"must be 0 or more, and 0 unless kind is 'clips', got {self.synthetic_clips} with kind "
                f"{self.kind!r}")
        if self.kind == "clips":
            self._check_clips()

    def _check_clips(self) -> None:
        """Clips name subsets of clip_split and carry no masks for BAG-CP."""
        require(self.copy_paste == "off", "copy_paste", f"must be 'off' with kind 'clips' (BAG-CP pastes targets "
                                                        f"into sky masks, which clips do not have), got "
                                                        f"{self.copy_paste!r}")
        for key in ("train_split", "val_split", "test_split"):
            value = getattr(self, key)
            require(value in SPLIT_SUBSETS or (key == "val_split" and value is None), key,
                    f"with kind 'clips' names a subset of clip_split {self.clip_split}: one of "
                    f"{', '.join(SPLIT_SUBSETS)}{' or null' if key == 'val_split' else ''}, got {value!r}")
        require(self.val_split != self.train_split, "val_split",
                f"must differ from train_split ({self.train_split!r}): a checkpoint chosen on training clips is "
                "the most over-fitted one; set it to null or the other subset")

    @property
    def root_path(self) -> Path:
        return REPO_ROOT / self.root

    @property
    def clips_root_path(self) -> Path:
        return REPO_ROOT / self.clips_root

    @property
    def clip_split_path(self) -> Path:
        return REPO_ROOT / self.clip_split

    def synthetic_scenes(self) -> list[SyntheticSceneConfig]:
        """The scenes of the ``synthetic_clips`` simulated training clips."""
        width, height = self.input_size
        return [SyntheticSceneConfig(seed=seed, width=width, height=height, frames=SYNTHETIC_CLIP_FRAMES,
                                     dtype="uint8") for seed in range(1, self.synthetic_clips + 1)]


@dataclass
class OptimizerConfig:
    lr: float = option(1.0, "DAdaptAdam's lr multiplier of the adapted step size D (the reference: 1.0)")
    weight_decay: float = option(0.05, "decoupled (AdamW-style) weight decay; none on norm layers and biases")
    d0: float = option(1e-6, "initial D estimate of D-Adaptation")

    def __post_init__(self):
        require(math.isfinite(self.lr) and self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(0 <= self.weight_decay < 1, "weight_decay", f"must be 0..<1, got {self.weight_decay}")
        require(self.d0 > 0, "d0", f"must be > 0, got {self.d0}")


@dataclass
class ScheduleConfig:
    epochs: int = option(20, "training epochs (each repeats train_split data.repeats times)")
    warmup_iters: int = option(500, "iterations at the start whose lr is reduced")
    warmup_factor: float = option(1 / 3, "lr factor at iteration 0 of the warm-up")
    warmup_mode: Literal["constant", "linear"] = option(
        "constant", "'constant': warmup_factor for all warm-up iterations (the reference's ConstantLR); 'linear': "
                  "rises from warmup_factor to 1")
    milestones: list[int] = option([8, 16], "epochs after which the lr is multiplied by gamma")
    gamma: float = option(0.1, "lr factor at each milestone")

    def __post_init__(self):
        require(self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")
        require(self.warmup_iters >= 0, "warmup_iters", f"must be >= 0, got {self.warmup_iters}")
        require(0 < self.warmup_factor <= 1, "warmup_factor", f"must be in (0, 1], got {self.warmup_factor}")
        require(all(m >= 1 for m in self.milestones) and self.milestones == sorted(set(self.milestones)),
                "milestones", f"must be ascending distinct epochs >= 1, got {self.milestones}")
        require(0 < self.gamma <= 1, "gamma", f"must be in (0, 1], got {self.gamma}")


@dataclass
class LoopConfig:
    batch_size: int = option(2, "images per iteration (the reference: 2 on one GPU)")
    num_workers: int = option(1, "data-loading worker processes (0: load in the training process)")
    seed: int = option(0, "seed of torch, numpy, python and of every augmentation draw")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "'auto': cuda when available, else cpu")
    amp: bool = option(False, "float16 autocast with gradient scaling on CUDA (the reference: off); ignored on CPU")
    max_iters_per_epoch: int | None = option(
        None, "cut every epoch to this many iterations (smoke runs); null: the whole repeated split")

    def __post_init__(self):
        require(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.num_workers >= 0, "num_workers", f"must be >= 0, got {self.num_workers}")
        require(self.max_iters_per_epoch is None or self.max_iters_per_epoch >= 1, "max_iters_per_epoch",
                f"must be at least 1 or null, got {self.max_iters_per_epoch}")


@dataclass
class EvaluationConfig:
    interval: int = option(1, "evaluate val_split every this many epochs (and after the last one)")
    select_metric: Literal["mAP12", "mAP07", "recall", "pd_at_fa"] = option(
        "mAP12", "val metric that picks best.pt (the reference keeps its best epoch by VOC mAP, on test_v2); "
                 "pd_at_fa: Pd by 3 px centroid distance at false_alarms_per_image, the operating point a tracker is "
                 "fed")
    false_alarms_per_image: float = option(0.5, "the false-alarm rate pd_at_fa is read at (reported at every "
                                                "validation, whatever select_metric)")
    nms_iou: float = option(0.5, "NMS IoU threshold on the host (the reference: 0.5)")
    max_detections: int = option(100, "detections kept per image after NMS (the reference: 100)")

    def __post_init__(self):
        require(self.interval >= 1, "interval", f"must be at least 1, got {self.interval}")
        require(0 < self.nms_iou <= 1, "nms_iou", f"must be in (0, 1], got {self.nms_iou}")
        require(self.false_alarms_per_image > 0, "false_alarms_per_image",
                f"must be above 0, got {self.false_alarms_per_image}")
        require(self.max_detections >= 1, "max_detections", f"must be at least 1, got {self.max_detections}")


@dataclass
class OutputConfig:
    dir: str | None = option(None, "run folder for checkpoints, logs and curves (null: runs/train/<name>)")
    log_interval: int = option(50, "iterations averaged into one row of log_iterations.csv")

    def __post_init__(self):
        require(self.log_interval >= 1, "log_interval", f"must be at least 1, got {self.log_interval}")


@dataclass
class TrainConfig:
    name: str = option("bafenet", "run name: outputs go to runs/train/<name> unless output.dir is set")
    model: str = option("configs/models/bafenet_lite.yaml", "model config YAML (see models/config.py); relative "
                                                            "to the repo root")
    data: DataConfig = option(DataConfig(), "the data (DenseSIRST splits or clips) and the training augmentation")
    optimizer: OptimizerConfig = option(OptimizerConfig(), "DAdaptAdam")
    schedule: ScheduleConfig = option(ScheduleConfig(), "epochs and the lr factor over iterations")
    loop: LoopConfig = option(LoopConfig(), "batches, workers, seed, device")
    evaluation: EvaluationConfig = option(EvaluationConfig(), "validation and checkpoint selection")
    output: OutputConfig = option(OutputConfig(), "where results go")

    @property
    def model_path(self) -> Path:
        return REPO_ROOT / self.model

    def run_dir(self) -> Path:
        return Path(self.output.dir) if self.output.dir else Path("runs") / "train" / self.name

    def model_config(self) -> dict[str, Any]:
        """The model config mapping (``build_detector`` validates it)."""
        return read_model_config(self.model_path)


def load_train_config(path: str | Path, overrides: list[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file plus `key.path=value` overrides; errors name the key path and the file."""
    return load_config_file(TrainConfig, Path(path), overrides, "train config", "data, optimizer, schedule")
