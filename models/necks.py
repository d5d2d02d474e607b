"""Feature pyramid network as mmdet's FPN without extra levels (the reference: start_level=1, num_outs=3 -> P3-P5).

No norm, no activation, Xavier-uniform init. Levels are chosen by number (l has stride 2^l), so our configs can
add P2 (stride 4) from C2; the reference's ``add_extra_convs`` creates nothing with num_outs=3 and is not built.
BP-FPN's GILS and DGR (models/bpfpn.py) are built only when the config switches them on, so the default FPN has
the same parameters, initialisation and outputs as without them.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from models.bpfpn import DirectionalGradientRegularizer, LowLevelShortcut
from models.config import FIRST_LEVEL, STEM_LEVEL, NeckConfig


class FPN(nn.Module):
    """[C2, C3, C4, C5] -> [P_l for l in levels], each [N, out_channels, H_l, W_l] at the size of C_l.

    Top-down path: 1x1 lateral conv per level, the coarser merged map upsampled (nearest, to the finer map's
    size) and added, then a 3x3 output conv per level. With GILS the shortcut from C2 (or from the stem) is added to
    the finest output; ``training_losses`` gives DGR's loss term.
    """

    def __init__(self, config: NeckConfig, backbone_channels: list[int], stem_channels: int | None = None):
        super().__init__()
        self.levels = list(config.levels)
        self.strides = [2 ** level for level in self.levels]
        in_channels = [backbone_channels[level - FIRST_LEVEL] for level in self.levels]
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, config.out_channels, 1) for c in in_channels)
        self.output_convs = nn.ModuleList(nn.Conv2d(config.out_channels, config.out_channels, 3, padding=1)
                                          for _ in in_channels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.shortcut_from_stem = config.gils.enabled and config.gils.source == "stem"
        if self.shortcut_from_stem and stem_channels is None:
            raise ValueError("gils.source 'stem' needs the stem's channels (stem_channels)")
        source_level, source_channels = ((STEM_LEVEL, stem_channels) if self.shortcut_from_stem
                                         else (FIRST_LEVEL, backbone_channels[0]))
        self.shortcut = LowLevelShortcut(
            config.gils, source_channels, config.out_channels,
            factor=2 ** (self.levels[0] - source_level)) if config.gils.enabled else None
        self.regularizer = DirectionalGradientRegularizer(
            config.dgr, config.out_channels, len(self.levels)) if config.dgr.weight > 0 else None

    def forward(self, features: list[Tensor], stem: Tensor | None = None) -> list[Tensor]:
        """``features`` [C2, ..]; ``stem`` the backbone's stride-2 map, used by GILS with source 'stem' only."""
        laterals = [conv(features[level - FIRST_LEVEL]) for conv, level in zip(self.lateral_convs, self.levels)]
        for index in range(len(laterals) - 1, 0, -1):
            finer = laterals[index - 1]
            laterals[index - 1] = finer + F.interpolate(laterals[index], size=finer.shape[2:], mode="nearest")
        outputs = [conv(lateral) for conv, lateral in zip(self.output_convs, laterals)]
        if self.shortcut is not None:
            source = stem if self.shortcut_from_stem else features[0]
            outputs[0] = outputs[0] + self.shortcut(source, outputs[0].shape[2:])
        return outputs

    def training_losses(self, outputs: list[Tensor]) -> dict[str, Tensor]:
        """Loss terms the neck adds in training, from its own ``outputs``: 'dgr' with DGR on, else none."""
        return {} if self.regularizer is None else {"dgr": self.regularizer(outputs)}
