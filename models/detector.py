"""The assembled detector: grey images -> backbone -> FPN -> head, and ``build_detector`` from a config dict.

Input normalisation is split so that engines can do it from two numbers: the engine (and the trainer, through
``Detector.normalize``) computes y = (pixel / full_scale * input_scale - mean) / std with the scalar constants of
``input_normalization``; the network's first module turns y into each channel's own normalisation.
With ``input.previous_frames`` = k the input holds F = k + 1 grey frames as channels (oldest first, key frame
last), all normalised the same way. With input.frame_fusion 'stem' the stem's first conv takes all of them (fusion
by channel stacking); with 'finest' every frame goes through the stem and first stage and models/fusion.py merges
their stride-4 maps.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from models.backbones import ResNet
from models.config import InputConfig, ModelConfig
from models.fusion import FinestLevelFusion
from models.heads import FCOSHead, HeadOutputs
from models.necks import FPN
from models.targets import ImageTargets
from pipeline.schema import build


class GreyToChannels(nn.Module):
    """[N, 1, H, W] normalised with the scalar mean / std (the channel averages) -> [N, channels, H, W] with each
    channel's own mean / std, as an exact per-channel affine map (a no-op for one channel, which also passes a
    multi-frame input [N, F, H, W] through)."""

    def __init__(self, config: InputConfig):
        super().__init__()
        mean, std = torch.tensor(config.mean), torch.tensor(config.std)
        self.scalar_mean, self.scalar_std = float(mean.mean()), float(std.mean())
        self.channels = config.channels
        self.register_buffer("gain", (self.scalar_std / std).view(1, -1, 1, 1))
        self.register_buffer("offset", ((self.scalar_mean - mean) / std).view(1, -1, 1, 1))
        self.identity = bool((self.gain == 1).all() and (self.offset == 0).all())

    def forward(self, images: Tensor) -> Tensor:
        if self.identity:
            return images if self.channels == 1 else images.expand(-1, self.channels, -1, -1)
        return images * self.gain + self.offset


class Detector(nn.Module):
    """Backbone + FPN (or BP-FPN) + FCOS/BAFE head.

    forward: images float32 [N, F, H, W] (F = ``frames``, 1 unless input.previous_frames > 0), normalised as
    ``normalize`` does -> HeadOutputs (raw, per level; in training mode with the neck's loss terms).
    loss: HeadOutputs and per-image ImageTargets -> dict of loss terms (sum them to train).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.grey_to_channels = GreyToChannels(config.input)
        fuse_finest = self.frames > 1 and config.input.frame_fusion == "finest"
        self.backbone = ResNet(config.backbone, config.input.channels * (1 if fuse_finest else self.frames),
                               num_stages=config.neck.levels[-1] - 1)
        self.frame_fusion = FinestLevelFusion(self.frames, self.backbone.out_channels[0]) if fuse_finest else None
        self.neck = FPN(config.neck, self.backbone.out_channels, self.backbone.stem_channels)
        self.head = FCOSHead(config.head, self.neck.strides)

    @property
    def strides(self) -> list[int]:
        return self.neck.strides

    @property
    def frames(self) -> int:
        """Frames per input: the key frame plus input.previous_frames."""
        return self.config.input.previous_frames + 1

    @property
    def frame_spacing(self) -> int:
        """Frames between two input slots of a multi-frame model (input.frame_spacing; 1: consecutive frames)."""
        return self.config.input.frame_spacing

    @property
    def input_normalization(self) -> dict[str, float]:
        """The scalar pre-processing of the engine contract (engines/onnxruntime_backend.py): mean, std and
        input_scale, the resize_factor frames are resized by, and the size_divisor frames are padded to (the
        coarsest stride)."""
        return {"mean": self.grey_to_channels.scalar_mean, "std": self.grey_to_channels.scalar_std,
                "input_scale": self.config.input.pixel_scale, "resize_factor": self.config.input.resize_factor,
                "size_divisor": 2 ** self.config.neck.levels[-1]}

    def normalize(self, images: Tensor) -> Tensor:
        """Grey images [N, 1, H, W] scaled to [0, 1] -> the network input (what the engines feed)."""
        constants = self.input_normalization
        return (images * constants["input_scale"] - constants["mean"]) / constants["std"]

    def forward(self, images: Tensor) -> HeadOutputs:
        images = self.grey_to_channels(images)
        if self.frame_fusion is not None:  # [N, F, H, W] -> [N * F, 1, H, W]: every frame through the same stem
            images = images.reshape(-1, 1, images.shape[2], images.shape[3])
        stem = self.backbone.stem(images)
        features = self.backbone.stages_after_stem(stem, after_first_stage=self.frame_fusion)
        if self.frame_fusion is not None and self.neck.shortcut_from_stem:
            stem = stem[self.frames - 1::self.frames]  # GILS takes the key frames', as FinestLevelFusion's C2
        pyramid = self.neck(features, stem)
        outputs = self.head(pyramid)
        if self.training:
            outputs.neck_losses.update(self.neck.training_losses(pyramid))
        return outputs

    def loss(self, outputs: HeadOutputs, targets: list[ImageTargets]) -> dict[str, Tensor]:
        """The head's loss terms plus those the neck computed in the training forward (BP-FPN's 'dgr')."""
        return {**self.head.loss(outputs, targets), **outputs.neck_losses}


def build_detector(config: dict[str, Any] | ModelConfig, path: str = "model") -> Detector:
    """The detector a model config describes: a plain dict (the `model:` section of a YAML file, validated and
    reported under ``path``) or an already validated ModelConfig."""
    if not isinstance(config, ModelConfig):
        config = build(ModelConfig, config, path)
    return Detector(config)
