"""Detection heads: FCOS, and the BAFE head (FCOS plus sky segmentation and a seg <-> cls channel exchange).

Follows bafenet-reference.md section 2. All modules are shared across pyramid levels; each level runs on its
own. The loss sits here, next to the logits it trains.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.config import HeadConfig
from models.losses import iou_log_loss, sigmoid_focal_loss, sky_segmentation_loss
from models.targets import ImageTargets, assign_fcos_targets, boxes_from_distances, centerness_targets, level_points
from pipeline.errors import UserError

HEAD_INIT_STD = 0.01  # mmdet head init: every Conv2d of the head Normal(0, 0.01), bias 0


@dataclass
class HeadOutputs:
    """Raw outputs, one tensor per pyramid level (level l: H_l x W_l cells at stride ``strides[l]``).

    cls_logits [N, num_classes, H_l, W_l]; box_distances [N, 4, H_l, W_l] (left, top, right, bottom from each
    cell's point, input pixels, >= 0); centerness_logits [N, 1, H_l, W_l]; seg_logits [N, 1, H_l, W_l] sky logits
    (BAFE only, used by the training loss only). neck_losses: weighted loss terms the neck computed in a training
    forward (BP-FPN's 'dgr'), which ``Detector.loss`` adds as they are; empty in eval.
    """

    cls_logits: list[Tensor]
    box_distances: list[Tensor]
    centerness_logits: list[Tensor]
    seg_logits: list[Tensor] | None
    strides: list[int]
    neck_losses: dict[str, Tensor] = field(default_factory=dict)


class Scale(nn.Module):
    """One learnable scalar factor (per pyramid level), initialised to 1."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def conv_gn_relu_tower(channels: int, num_convs: int, groups: int) -> nn.Sequential:
    """num_convs x [3x3 conv without bias, GroupNorm(groups), ReLU]: [N, C, H, W] -> [N, C, H, W]."""
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.GroupNorm(groups, channels),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def conv_bn_relu_pair(channels: int) -> nn.Sequential:
    """[3x3 conv C -> C/2, BN, ReLU, 3x3 conv C/2 -> C, BN, ReLU] (the reference's convs_seg / convs_cls)."""
    half = channels // 2
    return nn.Sequential(nn.Conv2d(channels, half, 3, padding=1), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                         nn.Conv2d(half, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class LargeSelectiveKernel(nn.Module):
    """Spatial selection between a 5x5 and a dilated 7x7 depth-wise receptive field: [N, C, H, W] -> same.

    As the reference's LSKModule: the result *replaces* the input (no x * attention, no residual, no activation).
    """

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.local_conv = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.dilated_conv = nn.Conv2d(channels, channels, 7, padding=9, dilation=3, groups=channels)
        self.local_reduce = nn.Conv2d(channels, half, 1)
        self.dilated_reduce = nn.Conv2d(channels, half, 1)
        self.gate_conv = nn.Conv2d(2, 2, 7, padding=3)
        self.expand = nn.Conv2d(half, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        local = self.local_conv(x)
        dilated = self.dilated_conv(local)
        local, dilated = self.local_reduce(local), self.dilated_reduce(dilated)
        both = torch.cat([local, dilated], dim=1)
        pooled = torch.cat([both.mean(dim=1, keepdim=True), both.amax(dim=1, keepdim=True)], dim=1)
        gates = self.gate_conv(pooled).sigmoid()
        return self.expand(local * gates[:, :1] + dilated * gates[:, 1:])


class ChannelScorer(nn.Module):
    """The reference's LSKLayer: one score per channel, [N, C, H, W] -> [N, C], the spatial mean of x * LSK(x).

    The reference then applies a sigmoid; only the ranking is used and the sigmoid keeps it, so the logits are
    ranked directly, which also avoids the float32 ties of sigmoid(x) for |x| ~ 5e-5 at this init.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.attention = LargeSelectiveKernel(channels)

    def forward(self, x: Tensor) -> Tensor:
        return (x * self.attention(x)).mean(dim=(2, 3))


class ChannelExchange(nn.Module):
    """Swap the K = int(C * ratio) top-scored channels between the seg and the cls feature (reference 2.3).

    Each feature's K best channels (per sample, in ascending channel order) pass through one shared per-pixel MLP
    K -> hidden -> K and overwrite the other feature's own top-K channels; all other channels are unchanged.
    The scorer runs without gradient, as in the reference (where top-K indices are its only use): its weights
    stay at their init.
    """

    def __init__(self, channels: int, ratio: float, hidden: int):
        super().__init__()
        self.num_exchanged = int(channels * ratio)
        self.scorer = ChannelScorer(channels)
        self.adapter = nn.Sequential(nn.Linear(self.num_exchanged, hidden), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, self.num_exchanged))

    def selected_channels(self, x: Tensor) -> Tensor:
        """Indices [N, K] of the K best-scored channels of x [N, C, H, W], ascending.

        Exact ties happen (channels that ReLU zeroed everywhere all score 0): they go to the lower channel index,
        so torch, ONNX Runtime and TensorRT pick the same channels.
        """
        with torch.no_grad():
            return top_k_ascending(self.scorer(x), self.num_exchanged)

    def adapted(self, x: Tensor, channels: Tensor) -> Tensor:
        """The MLP applied at every pixel to x's ``channels``: [N, K, H, W]."""
        selected = x.gather(1, _spatial_index(channels, x))
        return self.adapter(selected.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward(self, seg: Tensor, cls: Tensor) -> tuple[Tensor, Tensor]:
        seg_channels, cls_channels = self.selected_channels(seg), self.selected_channels(cls)
        from_seg, from_cls = self.adapted(seg, seg_channels), self.adapted(cls, cls_channels)
        return (seg.scatter(1, _spatial_index(seg_channels, seg), from_cls),
                cls.scatter(1, _spatial_index(cls_channels, cls), from_seg))


def top_k_ascending(scores: Tensor, k: int) -> Tensor:
    """Indices [N, k] of the k highest of scores [N, C], in ascending index order; of equal scores the lower
    index ranks higher. Built from comparisons, not a sort, so every backend breaks ties the same way."""
    channels = torch.arange(scores.shape[1], device=scores.device)
    higher = scores[:, None, :] > scores[:, :, None]  # [N, c, j]: channel j scores higher than channel c
    tied_lower = (scores[:, None, :] == scores[:, :, None]) & (channels[None, :] < channels[:, None])
    rank = (higher | tied_lower).sum(dim=2)  # [N, C]: 0 for the best channel
    # distinct keys, largest for the lowest selected index: top-k of them lists the selected channels ascending
    keys = torch.where(rank < k, (scores.shape[1] - channels).to(scores.dtype), 0.0)
    return keys.topk(k, dim=1).indices


def _spatial_index(channels: Tensor, like: Tensor) -> Tensor:
    """Channel indices [N, K] broadcast to [N, K, H, W] of ``like`` for gather / scatter along dim 1."""
    return channels[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])


class BafeBranch(nn.Module):
    """The Background-Aware Feature Exchange part of the BAFE head: a sky-segmentation tower whose feature
    exchanges channels with the classification feature.

    (FPN feature x, cls tower output) [N, C, H, W] each -> (new cls feature [N, C, H, W], sky logits [N, 1, H, W]).
    Order (reference 2.2): seg tower; one shared LSK on both; a conv-BN-ReLU pair each; exchange; seg output conv.
    """

    def __init__(self, config: HeadConfig):
        super().__init__()
        channels = config.feat_channels
        self.seg_convs = conv_gn_relu_tower(channels, config.stacked_convs, config.gn_groups)
        self.lsk = LargeSelectiveKernel(channels)
        self.seg_refine = conv_bn_relu_pair(channels)
        self.cls_refine = conv_bn_relu_pair(channels)
        self.exchange = ChannelExchange(channels, config.exchange_ratio, config.adapter_hidden)
        self.conv_seg = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: Tensor, cls_feature: Tensor) -> tuple[Tensor, Tensor]:
        seg = self.seg_refine(self.lsk(self.seg_convs(x)))
        cls = self.cls_refine(self.lsk(cls_feature))
        seg, cls = self.exchange(seg, cls)
        return cls, self.conv_seg(seg)


class FCOSHead(nn.Module):
    """FCOS head (GN conv towers, per-level Scale, centerness) with the BAFE branch when ``kind == 'bafe'``.

    forward: FPN features [N, C, H_l, W_l] per level -> HeadOutputs. loss: HeadOutputs + targets -> loss terms.
    """

    def __init__(self, config: HeadConfig, strides: list[int]):
        super().__init__()
        self.config, self.strides = config, list(strides)
        channels = config.feat_channels
        self.cls_convs = conv_gn_relu_tower(channels, config.stacked_convs, config.gn_groups)
        self.reg_convs = conv_gn_relu_tower(channels, config.stacked_convs, config.gn_groups)
        self.bafe = BafeBranch(config) if config.kind == "bafe" else None
        self.conv_cls = nn.Conv2d(channels, config.num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in self.strides)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=HEAD_INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.constant_(self.conv_cls.bias, -math.log((1 - config.prior_prob) / config.prior_prob))

    def forward(self, features: list[Tensor]) -> HeadOutputs:
        outputs = HeadOutputs([], [], [], [] if self.bafe is not None else None, self.strides)
        for x, scale, stride in zip(features, self.scales, self.strides):
            cls_feature, reg_feature = self.cls_convs(x), self.reg_convs(x)
            if self.bafe is not None:
                cls_feature, seg_logits = self.bafe(x, cls_feature)
                outputs.seg_logits.append(seg_logits)
            raw = scale(self.conv_reg(reg_feature))
            outputs.box_distances.append(F.relu(raw) * stride if self.config.norm_on_bbox else raw.exp())
            outputs.cls_logits.append(self.conv_cls(cls_feature))
            outputs.centerness_logits.append(
                self.conv_centerness(reg_feature if self.config.centerness_on_reg else cls_feature))
        return outputs

    def loss(self, outputs: HeadOutputs, targets: list[ImageTargets]) -> dict[str, Tensor]:
        """Loss terms (reference 1.2): 'cls' focal / num_pos; 'box' -log IoU weighted by the centerness targets /
        their sum; 'centerness' BCE / num_pos; with the BAFE branch 'seg', the sky BCE over all levels."""
        num_classes = self.config.num_classes
        points, ranges = self._points_and_ranges(outputs)
        assigned = [assign_fcos_targets(points, ranges, t.boxes, t.labels, num_classes, self.config.min_assign_size)
                    for t in targets]
        labels = torch.stack([labels for labels, _, _ in assigned])  # [N, P]
        target_distances = torch.stack([distances for _, distances, _ in assigned])  # [N, P, 4]
        assignment_distances = torch.stack([distances for _, _, distances in assigned])  # [N, P, 4]
        cls_logits = _flatten_levels(outputs.cls_logits)  # [N, P, num_classes]
        distances = _flatten_levels(outputs.box_distances)  # [N, P, 4]
        centerness = _flatten_levels(outputs.centerness_logits)[..., 0]  # [N, P]

        positive = labels < num_classes
        num_positive = positive.sum().clamp(min=1).float()
        one_hot = F.one_hot(labels, num_classes + 1)[..., :num_classes].to(cls_logits.dtype)
        losses = {"cls": sigmoid_focal_loss(cls_logits, one_hot, self.config.focal_alpha,
                                            self.config.focal_gamma).sum() / num_positive}
        positive_distances, positive_centerness = distances[positive], centerness[positive]
        if positive_distances.shape[0] == 0:  # zero losses that keep the graph connected
            losses["box"], losses["centerness"] = positive_distances.sum(), positive_centerness.sum()
        else:
            positive_points = points.expand(len(targets), -1, -1)[positive]
            goal = target_distances[positive]
            goal_centerness = centerness_targets(assignment_distances[positive])
            box_loss = iou_log_loss(boxes_from_distances(positive_points, positive_distances),
                                    boxes_from_distances(positive_points, goal))
            losses["box"] = (box_loss * goal_centerness).sum() / goal_centerness.sum().clamp(min=1e-6)
            losses["centerness"] = F.binary_cross_entropy_with_logits(
                positive_centerness, goal_centerness, reduction="sum") / num_positive
        if outputs.seg_logits is not None:
            if any(t.sky_mask is None for t in targets):
                raise UserError("the BAFE head (model head.kind 'bafe') trains on sky masks, but the training data "
                                "gave none; use a dataset with sky masks (DenseSIRST SkySeg) or head.kind 'fcos'")
            losses["seg"] = sky_segmentation_loss(outputs.seg_logits, torch.stack([t.sky_mask for t in targets]))
        return losses

    def _points_and_ranges(self, outputs: HeadOutputs) -> tuple[Tensor, Tensor]:
        """Locations [P, 2] of all levels and each one's regress range [P, 2]."""
        device = outputs.cls_logits[0].device
        points, ranges = [], []
        for logits, stride, bounds in zip(outputs.cls_logits, outputs.strides, self.config.regress_ranges):
            level = level_points(logits.shape[2], logits.shape[3], stride, device)
            points.append(level)
            ranges.append(torch.tensor(bounds, device=device).expand(level.shape[0], 2))
        return torch.cat(points), torch.cat(ranges)


def _flatten_levels(maps: list[Tensor]) -> Tensor:
    """Per-level maps [N, C, H_l, W_l] -> [N, P, C] with P = sum of H_l * W_l, row-major per level."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)
