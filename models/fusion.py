"""Multi-frame fusion at the finest pyramid level (input.frame_fusion 'finest').

Stacking the k + 1 frames as the stem's channels (the default, 'stem') makes the first conv mix raw pixels of frames
before any feature exists, and from a random init the network has to learn to single out the key frame. Here each
frame instead goes through the same stem and first stage (weights shared), and the key frame's stride-4 map C2 gets
a learned 1x1 mix of all frames' C2 added. The mix starts at zero, so training starts from the single-frame network
and takes from the previous frames only what lowers the loss. The rest of the backbone, the neck and the head run
once, on the fused map.
"""
from __future__ import annotations

from torch import Tensor, nn


class FinestLevelFusion(nn.Module):
    """C2 of every frame [N * F, C, H, W] (frame-major within each image: oldest first, key frame last) ->
    the key frame's C2 plus a 1x1 conv of all F maps [N, C, H, W]."""

    def __init__(self, frames: int, channels: int):
        super().__init__()
        self.frames = frames
        self.mix = nn.Conv2d(frames * channels, channels, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, c2: Tensor) -> Tensor:
        _, channels, height, width = c2.shape  # reshape by explicit sizes: traced as dynamic in the ONNX export
        key_frames = c2[self.frames - 1::self.frames]
        return key_frames + self.mix(c2.reshape(-1, self.frames * channels, height, width))
