"""ResNet-18/34/50/101 returning C2..C5, with mmdet's options: caffe stride placement, frozen BN, frozen stages.

Module and parameter names follow torchvision's ResNet (conv1, bn1, layer1.0.conv1, ..., downsample.0/1), so a
torchvision state dict loads with ``strict=False`` (its ``fc`` is unused); no weights are downloaded here.
"""
from __future__ import annotations

from torch import Tensor, nn

from models.config import BackboneConfig

# depth -> (block kind, blocks per stage)
RESNET_LAYOUTS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                  50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus the shortcut; the stride sits on the first conv (``caffe`` changes nothing here)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, caffe_style: bool):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, channels, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) plus the shortcut. ``caffe_style`` puts the stride on the first 1x1
    conv (mmdet style='caffe', the reference); otherwise it sits on the 3x3 (torchvision)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, caffe_style: bool):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, channels, stride if caffe_style else 1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, 1 if caffe_style else stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """The projection shortcut (1x1 conv with the block's stride + BN) where the shape changes, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class ResNet(nn.Module):
    """ResNet body: images [N, in_channels, H, W] -> [C2, .., C(num_stages + 1)]: C_l is
    [N, out_channels[l - 2], H / 2^l, W / 2^l] (sizes rounded up). Stages past ``num_stages`` are not built, so a
    pyramid without P5 does not pay for stage 4."""

    def __init__(self, config: BackboneConfig, in_channels: int, num_stages: int = 4):
        super().__init__()
        block_kind, blocks_per_stage = RESNET_LAYOUTS[config.depth]
        blocks_per_stage = blocks_per_stage[:num_stages]
        block = BasicBlock if block_kind == "basic" else Bottleneck
        self.frozen_bn, self.frozen_stages = config.frozen_bn, config.frozen_stages
        width = self.stem_channels = config.base_channels
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.out_channels = []
        channels_in = width
        for stage, num_blocks in enumerate(blocks_per_stage):
            channels = width * 2 ** stage
            stride = 1 if stage == 0 else 2
            blocks = []
            for index in range(num_blocks):
                blocks.append(block(channels_in, channels, stride if index == 0 else 1, config.style == "caffe"))
                channels_in = channels * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            self.out_channels.append(channels_in)
        self.stages = [getattr(self, f"layer{stage + 1}") for stage in range(num_stages)]
        self._init_weights(config.zero_init_residual)
        self._freeze()

    def _init_weights(self, zero_init_residual: bool) -> None:
        """mmdet's from-scratch init: Kaiming-normal (fan_out) convs, BN weight 1 / bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(module.last_bn.weight)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.conv1, self.bn1] + self.stages[:self.frozen_stages]

    def _freeze(self) -> None:
        """Stop gradients into frozen stages and into every BN's affine parameters when ``frozen_bn``."""
        for module in self._frozen_modules():
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        if self.frozen_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.requires_grad_(False)
                    module.bias.requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNet":
        """Like nn.Module.train, but frozen stages and (with ``frozen_bn``) every BN stay in eval mode, so their
        running statistics never update (mmdet norm_eval=True)."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        if mode and self.frozen_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, images: Tensor, after_first_stage: nn.Module | None = None) -> list[Tensor]:
        """``after_first_stage`` maps C2 before the later stages see it (multi-frame fusion, models/fusion.py)."""
        return self.stages_after_stem(self.stem(images), after_first_stage)

    def stem(self, images: Tensor) -> Tensor:
        """The stride-2 map [N, stem_channels, H / 2, W / 2] before max pooling (BP-FPN's GILS can take it)."""
        return self.relu(self.bn1(self.conv1(images)))

    def stages_after_stem(self, stem: Tensor, after_first_stage: nn.Module | None = None) -> list[Tensor]:
        """The stem's map -> [C2, ..]; ``after_first_stage`` as in forward."""
        x = self.maxpool(stem)
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == 0 and after_first_stage is not None:
                x = after_first_stage(x)
            features.append(x)
        return features
