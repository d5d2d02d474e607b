"""The built-in synthetic IR scene as a source: the default demo needs no file and no download."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from simulation import SyntheticScene, SyntheticSceneConfig


class SyntheticSource:
    def __init__(self, config: SyntheticSceneConfig, live: bool = False, stream_id: str = "synthetic"):
        self.scene = SyntheticScene(config)
        self.stream_id = stream_id
        self.live = live
        self.fps = 30.0
        self.num_frames = len(self.scene)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self.scene)):
            yield self.scene.frame(index)

    def ground_truth(self) -> np.ndarray | None:
        return self.scene.ground_truth()

    def close(self) -> None:
        pass
