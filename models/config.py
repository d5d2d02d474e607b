"""The `model:` config section: everything ``build_detector`` needs, validated like every other section.

Defaults are the reference BAFE-Net R18 (see shared/reference/bafenet-reference.md, sections 1-2) except where a
field says otherwise; configs/models/*.yaml state their deviations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import UserError
from pipeline.schema import option, require

RESNET_DEPTHS = (18, 34, 50, 101)
FIRST_LEVEL, LAST_LEVEL = 2, 5  # pyramid levels the ResNet feeds: C2 (stride 4) .. C5 (stride 32)
STEM_LEVEL = 1                   # the ResNet stem's output, before max pooling, has stride 2
MAX_PREVIOUS_FRAMES = 15
MAX_FRAME_SPACING = 30


@dataclass
class InputConfig:
    channels: int = option(
        3, "channels of the backbone's first conv; the grey frame is repeated into them (the reference: 3, grey "
           "images loaded as BGR; 1 skips the repeat)")
    pixel_scale: float = option(
        255.0, "pixel range before mean/std: 255 for raw 8-bit values (the reference, mmdet style), 1 for [0, 1]")
    mean: list[float] = option(
        [102.9801, 115.9465, 122.7717], "per-channel mean subtracted, in pixel_scale units (one value per channel)")
    std: list[float] = option([1.0, 1.0, 1.0], "per-channel std divided by, in pixel_scale units (one per channel)")
    previous_frames: int = option(
        0, "k, ours for moving targets (0: single frames, the reference): the key frame and its k previous frames "
           "are the network's k + 1 input channels, oldest first, key frame last, each normalised with the same "
           f"mean / std and merged as frame_fusion says (needs channels 1; at most {MAX_PREVIOUS_FRAMES}); the "
           "engine contract for it is in models/export.py")
    frame_fusion: Literal["stem", "finest"] = option(
        "stem", "ours, with previous_frames > 0: where the frames meet. 'stem': stacked as the stem's input "
                "channels (the cheapest); 'finest': the stem and first stage run on every frame with shared weights, "
                "and a 1x1 conv of all their stride-4 maps is added to the key frame's, starting at 0 so training "
                "starts from the single-frame network (models/fusion.py); the first stage costs F times")
    frame_spacing: int = option(
        1, "ours, with previous_frames > 0: the previous frames are every s-th frame before the key frame (t - k s "
           ".. t - s, t), so a slow target moves s times as far between slots; the engines keep k s frames per "
           f"stream (ONNX metadata frame_spacing). 1..{MAX_FRAME_SPACING}")
    resize_factor: float = option(
        1.0, "ours (1 in the reference): the network sees every frame resized by this factor (bilinear). 2 gives "
             "2-9 px targets four times the pixels, and a stride-4 output grid falls every 2 frame pixels; the "
             "engines apply it (ONNX metadata resize_factor), training with data.resize 'factor'. Compute grows "
             "with its square")

    def __post_init__(self):
        require(math.isfinite(self.resize_factor) and 0.25 <= self.resize_factor <= 4, "resize_factor",
                f"must be 0.25..4, got {self.resize_factor}")
        require(self.channels in (1, 3), "channels", f"must be 1 or 3, got {self.channels}")
        require(0 <= self.previous_frames <= MAX_PREVIOUS_FRAMES, "previous_frames",
                f"must be 0..{MAX_PREVIOUS_FRAMES}, got {self.previous_frames}")
        require(1 <= self.frame_spacing <= MAX_FRAME_SPACING, "frame_spacing",
                f"must be 1..{MAX_FRAME_SPACING}, got {self.frame_spacing}")
        require(self.previous_frames == 0 or self.channels == 1, "previous_frames",
                f"stacks grey frames as the input channels, so it needs channels 1, got channels {self.channels}")
        require(math.isfinite(self.pixel_scale) and self.pixel_scale > 0, "pixel_scale",
                f"must be > 0 (1 or 255), got {self.pixel_scale}")
        for key in ("mean", "std"):
            values = getattr(self, key)
            require(len(values) == self.channels and all(math.isfinite(v) for v in values), key,
                    f"must list one finite number per input channel ({self.channels}), got {values}")
        require(all(s > 0 for s in self.std), "std", f"must be > 0 for every channel, got {self.std}")


@dataclass
class BackboneConfig:
    depth: int = option(18, f"ResNet depth, one of {RESNET_DEPTHS} (BasicBlock for 18/34, Bottleneck above)")
    base_channels: int = option(64, "channels of the stem and of stage 1 (64 in ResNet); each stage doubles them")
    style: Literal["pytorch", "caffe"] = option(
        "caffe", "where a down-sampling Bottleneck puts its stride: 'caffe' on the first 1x1 conv (the reference), "
                 "'pytorch' on the 3x3; no effect on depth 18/34")
    frozen_bn: bool = option(
        True, "BatchNorm always uses its running statistics and its affine parameters never train (the reference, "
              "made for ImageNet-pretrained weights; from scratch it makes every BN an identity)")
    frozen_stages: int = option(-1, "stages whose weights never train: -1 none (the reference), 0 the stem, "
                                    "i the stem and stages 1..i")
    zero_init_residual: bool = option(
        False, "start each residual branch's last BN at weight 0, so every block starts as an identity (helps "
               "training from scratch; needs frozen_bn false)")

    def __post_init__(self):
        require(self.depth in RESNET_DEPTHS, "depth", f"must be one of {RESNET_DEPTHS}, got {self.depth}")
        require(8 <= self.base_channels <= 256, "base_channels", f"must be 8..256, got {self.base_channels}")
        require(-1 <= self.frozen_stages <= 4, "frozen_stages", f"must be -1..4, got {self.frozen_stages}")
        require(not (self.zero_init_residual and self.frozen_bn), "zero_init_residual",
                "cannot be true with frozen_bn: a frozen zero BN weight switches the residual branches off for good")


@dataclass
class GilsConfig:
    """BP-FPN's Gradient-Isolated Low-Level Shortcut, as we interpret it (models/bpfpn.py)."""

    enabled: bool = option(
        False, "add a low-level map (source), losslessly downsampled (space-to-depth) to the finest output's stride "
               "and passed through a small adapter, to the finest FPN output (false: the plain FPN)")
    source: Literal["c2", "stem"] = option(
        "c2", "the low-level map: 'c2', the stride-4 map C2, which a P3-P5 pyramid does not use; 'stem', the stem's "
              "stride-2 map before max pooling, finer than anything a pyramid with P2 (which already takes C2) sees")
    detach: bool = option(
        True, "stop the shortcut's gradient at its source, so only the adapter learns from it and the backbone gets "
              "no gradient through it; false: a plain shortcut (the paper's negative case, shortcut learning)")
    gate: bool = option(
        False, "scale the adapter output by a learnable per-channel gate that starts at 0, so training starts "
               "from the plain FPN's outputs")
    kernel_size: Literal[1, 3] = option(1, "kernel of the adapter conv (conv, norm, ReLU)")
    norm: Literal["group", "batch"] = option(
        "group", "the adapter's norm: 'group' (GroupNorm, as the FCOS head), or 'batch' (BatchNorm), which the "
                 "engines fold into the conv, so the shortcut costs one conv, ReLU and add at inference")


@dataclass
class DgrConfig:
    """BP-FPN's Directional Gradient Regularization, as we interpret it (models/bpfpn.py); training only."""

    weight: float = option(
        0.0, "lambda of the one-way cross-level consistency loss, reported as loss term 'dgr' (0: off; the notes "
             "suggest 0.05, 0.1, 0.5 or 1)")
    direction: Literal["coarse_to_fine", "fine_to_coarse"] = option(
        "coarse_to_fine", "which level of each adjacent pair learns: 'coarse_to_fine' pulls the finer level "
                          "towards its upsampled coarser neighbour, which gets no gradient (the interpretation); "
                          "'fine_to_coarse' the opposite (ablation)")

    def __post_init__(self):
        require(math.isfinite(self.weight) and self.weight >= 0, "weight", f"must be >= 0, got {self.weight}")


@dataclass
class NeckConfig:
    out_channels: int = option(256, "channels of every FPN output")
    levels: list[int] = option(
        [3, 4, 5], f"pyramid levels the FPN outputs, consecutive, within {FIRST_LEVEL}..{LAST_LEVEL}; level l has "
                   "stride 2^l (the reference: P3-P5; add 2 for a stride-4 map, which many 2-9 px targets need)")
    gils: GilsConfig = option(GilsConfig(), "BP-FPN GILS: the gradient-isolated low-level shortcut (off by default)")
    dgr: DgrConfig = option(DgrConfig(), "BP-FPN DGR: the directional cross-level consistency loss (off by default)")

    def __post_init__(self):
        require(self.out_channels >= 8, "out_channels", f"must be at least 8, got {self.out_channels}")
        require(len(self.levels) >= 1 and self.levels == list(range(self.levels[0], self.levels[0] + len(self.levels)))
                and FIRST_LEVEL <= self.levels[0] and self.levels[-1] <= LAST_LEVEL, "levels",
                f"must be consecutive ascending levels within {FIRST_LEVEL}..{LAST_LEVEL}, got {self.levels}")
        require(self.dgr.weight == 0 or len(self.levels) >= 2, "dgr.weight",
                f"DGR compares adjacent levels, so it needs at least two levels, got {self.levels}")


@dataclass
class HeadConfig:
    kind: Literal["bafe", "fcos"] = option(
        "bafe", "'bafe': FCOS plus the sky-segmentation branch and the seg<->cls channel exchange (BAFE-Net); "
                "'fcos': the plain FCOS head")
    num_classes: int = option(1, "object classes (sigmoid classification, no background class)")
    feat_channels: int = option(256, "channels of the conv towers (must equal neck.out_channels)")
    stacked_convs: int = option(4, "3x3 conv + GroupNorm + ReLU layers per tower")
    gn_groups: int = option(32, "GroupNorm groups in the towers (must divide feat_channels)")
    regress_ranges: list[list[float]] = option(
        [[-1.0, 64.0], [64.0, 128.0], [128.0, 256.0]],
        "per pyramid level, [low, high] bounds (px, both inclusive) of a location's largest box distance for it to "
        "be a positive there (.inf for no bound)")
    norm_on_bbox: bool = option(
        False, "distances = ReLU(scale * raw) * stride instead of exp(scale * raw) (the reference: false)")
    centerness_on_reg: bool = option(
        False, "predict centerness from the regression tower instead of the classification feature (the "
               "reference: false, from the cls feature after the exchange)")
    prior_prob: float = option(0.01, "initial foreground probability of the classification logits")
    exchange_ratio: float = option(
        0.5, "bafe: fraction p of the channels exchanged between the seg and cls features (K = int(C * p))")
    adapter_hidden: int = option(64, "bafe: hidden width of the per-pixel MLP adapter K -> hidden -> K")
    min_assign_size: float = option(
        0.0, "ours, 0 for the reference: in target assignment, boxes smaller than this (px, input scale) are grown "
             "about their centres to this size, so every tiny target gets a positive location; regression still "
             "aims at the true box (set it a little above the finest stride, e.g. 4.5 for stride 4)")
    focal_alpha: float = option(0.25, "focal loss alpha (weight of positives)")
    focal_gamma: float = option(2.0, "focal loss gamma (down-weights easy examples)")

    def __post_init__(self):
        require(self.num_classes >= 1, "num_classes", f"must be at least 1, got {self.num_classes}")
        require(self.stacked_convs >= 1, "stacked_convs", f"must be at least 1, got {self.stacked_convs}")
        require(self.gn_groups >= 1 and self.feat_channels % self.gn_groups == 0, "gn_groups",
                f"must divide feat_channels ({self.feat_channels}), got {self.gn_groups}")
        require(self.feat_channels % 2 == 0, "feat_channels", f"must be even (the LSK halves it), got "
                                                              f"{self.feat_channels}")
        require(all(len(r) == 2 and r[0] < r[1] for r in self.regress_ranges), "regress_ranges",
                f"must be [low, high] pairs with low < high, got {self.regress_ranges}")
        require(0 < self.prior_prob < 1, "prior_prob", f"must be in (0, 1), got {self.prior_prob}")
        require(1 <= int(self.feat_channels * self.exchange_ratio) <= self.feat_channels
                and self.exchange_ratio <= 1, "exchange_ratio",
                f"must give 1..feat_channels exchanged channels (0 < p <= 1), got {self.exchange_ratio}")
        require(self.adapter_hidden >= 1, "adapter_hidden", f"must be at least 1, got {self.adapter_hidden}")
        require(math.isfinite(self.min_assign_size) and self.min_assign_size >= 0, "min_assign_size",
                f"must be >= 0 px (0 turns it off), got {self.min_assign_size}")
        require(0 <= self.focal_alpha <= 1, "focal_alpha", f"must be 0..1, got {self.focal_alpha}")
        require(self.focal_gamma >= 0, "focal_gamma", f"must be >= 0, got {self.focal_gamma}")


@dataclass
class PostprocessConfig:
    score_threshold: float = option(
        0.05, "locations whose class probability (before the centerness factor) is at most this score 0")
    pre_top_k: int = option(1000, "candidates kept per pyramid level, best class probability first (mmdet nms_pre)")

    def __post_init__(self):
        require(0 <= self.score_threshold < 1, "score_threshold", f"must be 0..<1, got {self.score_threshold}")
        require(self.pre_top_k >= 1, "pre_top_k", f"must be at least 1, got {self.pre_top_k}")


@dataclass
class ModelConfig:
    name: str = option("bafenet", "model name (written into exported files)")
    input: InputConfig = option(InputConfig(), "how the grey frame becomes the backbone's input")
    backbone: BackboneConfig = option(BackboneConfig(), "the ResNet")
    neck: NeckConfig = option(NeckConfig(), "the FPN, with BP-FPN's GILS and DGR as switches")
    head: HeadConfig = option(HeadConfig(), "the detection head and its losses")
    postprocess: PostprocessConfig = option(PostprocessConfig(), "decoding of the outputs into candidate boxes")

    def __post_init__(self):
        require(self.head.feat_channels == self.neck.out_channels, "head.feat_channels",
                f"must equal neck.out_channels ({self.neck.out_channels}), got {self.head.feat_channels}")
        require(len(self.head.regress_ranges) == len(self.neck.levels), "head.regress_ranges",
                f"needs one range per neck level ({len(self.neck.levels)}: {self.neck.levels}), got "
                f"{len(self.head.regress_ranges)}")


def read_model_config(path: Path, derived_from: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A model config YAML as one mapping. ``base: OTHER.yaml`` (a path relative to this file) starts from that
    config, and each key here replaces the base's, key by key inside sections at every depth: a variant states
    only what differs (e.g. bafenet_tiny_x2.yaml is bafenet_tiny.yaml with input.resize_factor 2, and
    bpfpn_tiny_k2.yaml changes neck.gils.norm alone)."""
    from pipeline.config import read_yaml_file  # the run config's module: sources, sinks, trackers

    data = read_yaml_file(path, "model config")
    if not isinstance(data, dict):
        raise UserError(f"model config {path} must hold a mapping (input, backbone, neck, head, ...)")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = (path.parent / str(base)).resolve()
    if base_path in derived_from or base_path == path.resolve():
        raise UserError(f"model config {path}: base {base} leads back to itself; name a config without that base")
    return _merged(read_model_config(base_path, (*derived_from, path.resolve())), data)


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with each key of ``changes`` replacing its own; sections present in both merge the same way."""
    merged = dict(base)
    for key, value in changes.items():
        both_sections = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if both_sections else value
    return merged
