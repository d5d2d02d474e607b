"""BP-FPN (Zhang et al., arXiv 2511.13013) as we interpret it: the FPN of models/necks.py plus GILS and DGR.

The paper has no public code and only its abstract is known (shared/reference/bpfpn-notes.md): a pyramid designed
from the backpropagation point of view, with a Gradient-Isolated Low-Level Shortcut (fine detail enters the pyramid
without the shortcut changing the main gradient flow, which would invite shortcut learning) and a Directional
Gradient Regularization (training-only cross-level consistency). Both modules below are our interpretation, each a
switch in NeckConfig (``gils``, ``dgr``) so an ablation is one config line; both off is the plain FPN, unchanged.

- GILS (``LowLevelShortcut``): C2 (stride 4), gradient stopped, space-to-depth to the finest output's stride (no
  value is lost, so a 1-2 px target survives, where pooling could average it away), a small adapter (conv,
  GroupNorm or BatchNorm, ReLU; the conv and the space-to-depth run as one equal strided conv), added to the finest
  output. Only the adapter learns from this path. A pyramid with P2 already takes C2 through its lateral conv, so
  there GILS adds only a detached copy of it; with ``source: stem`` it takes the stem's stride-2 map instead, the
  finer detail such a pyramid otherwise never sees.
- DGR (``DirectionalGradientRegularizer``): for each pair of adjacent outputs, 1 - cos between a 1x1 projection
  of the learning level and the other level, detached, at the finer level's resolution (nearest upsampling),
  averaged over pixels and summed over pairs, times ``weight``. Gradient flows one way only: by default into the
  finer level (the coarser, semantically stronger one is the target).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.config import DgrConfig, GilsConfig

GROUP_NORM_GROUPS = 32  # the adapter's GroupNorm uses the largest divisor of its channels up to this


class LowLevelShortcut(nn.Module):
    """GILS: the source map (C2 or the stem's) [N, in_channels, Hs, Ws] -> [N, out_channels, H, W], to add to the
    finest output [.., H, W].

    ``factor`` = finest stride / source stride. The adapter's conv is defined on the space-to-depth (pixel
    unshuffle) of the source, in_channels x factor^2 channels, and runs as the equal strided conv on the source
    itself (``space_to_depth_conv``): same values and multiply-adds, without a transpose of the largest map in the
    network. A source smaller than factor x (H, W) (odd sizes) is padded bottom/right first; inputs padded to the
    coarsest stride, as the engines pad them, never need it, so the exported graph (traced at such a size) has no
    Pad, which would copy that map again. The transpose and the Pad together cost ONNX Runtime a quarter to a third
    of the model's latency (README, "BP-FPN on thermal video"). With ``detach`` the backbone gets no gradient
    through this path; with ``gate`` the result is scaled per channel by a gate that starts at 0.
    """

    def __init__(self, config: GilsConfig, in_channels: int, out_channels: int, factor: int):
        super().__init__()
        self.factor, self.detach = factor, config.detach
        self.adapter = nn.Sequential(
            nn.Conv2d(in_channels * factor ** 2, out_channels, config.kernel_size, padding=config.kernel_size // 2,
                      bias=False),
            nn.GroupNorm(math.gcd(GROUP_NORM_GROUPS, out_channels), out_channels) if config.norm == "group"
            else nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True))
        self.gate = nn.Parameter(torch.zeros(1, out_channels, 1, 1)) if config.gate else None

    def forward(self, source: Tensor, size: tuple[int, int]) -> Tensor:
        x = source.detach() if self.detach else source
        missing = (size[0] * self.factor - x.shape[2], size[1] * self.factor - x.shape[3])
        if missing != (0, 0):
            x = F.pad(x, (0, missing[1], 0, missing[0]))
        x = self.adapter[1:](space_to_depth_conv(x, self.adapter[0].weight, self.factor))
        return x if self.gate is None else x * self.gate


def space_to_depth_conv(x: Tensor, weight: Tensor, factor: int) -> Tensor:
    """conv2d(pixel_unshuffle(x, factor), weight, padding=k // 2) computed as one conv on x itself.

    ``weight`` [O, C x factor^2, k, k] (k odd), channel c x factor^2 + a x factor + b of which sees
    x[c, factor i + a, factor j + b]. Tap (di, dj) of that channel is tap (di x factor + a, dj x factor + b) of a
    k x factor kernel with stride factor and padding (k // 2) x factor: the same sum over the same pixels.
    """
    out_channels, channels, k = weight.shape[0], weight.shape[1] // factor ** 2, weight.shape[2]
    strided = (weight.reshape(out_channels, channels, factor, factor, k, k).permute(0, 1, 4, 2, 5, 3)
               .reshape(out_channels, channels, k * factor, k * factor))
    return F.conv2d(x, strided, stride=factor, padding=(k // 2) * factor)


class DirectionalGradientRegularizer(nn.Module):
    """DGR: pyramid outputs [N, C, H_l, W_l], finest first -> the weighted loss (a scalar tensor).

    Per adjacent pair (fine, coarse), coarse is upsampled (nearest) to the fine size; the learning side (fine for
    'coarse_to_fine', coarse for 'fine_to_coarse') goes through its own 1x1 projection, initialised to the
    identity so that levels that already agree cost 0; the other side is detached.
    """

    def __init__(self, config: DgrConfig, channels: int, num_levels: int):
        super().__init__()
        self.weight, self.fine_learns = config.weight, config.direction == "coarse_to_fine"
        self.projections = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(num_levels - 1))
        with torch.no_grad():
            for projection in self.projections:
                projection.weight.copy_(torch.eye(channels)[:, :, None, None])
                projection.bias.zero_()

    def forward(self, features: list[Tensor]) -> Tensor:
        total = features[0].new_zeros(())
        for projection, fine, coarse in zip(self.projections, features[:-1], features[1:]):
            coarse = F.interpolate(coarse, size=fine.shape[2:], mode="nearest")
            learner, target = (fine, coarse) if self.fine_learns else (coarse, fine)
            total = total + (1 - F.cosine_similarity(projection(learner), target.detach(), dim=1)).mean()
        return self.weight * total
