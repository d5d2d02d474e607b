"""Decoding raw head outputs into candidate boxes and scores, in plain tensor ops that export to ONNX.

As the reference's test config (bafenet-reference.md 1.3) up to, not including, NMS: per level, locations whose
class probability is at most ``score_threshold`` score 0, the ``pre_top_k`` best by class probability are kept,
and their score is class probability x centerness probability (no square root). NMS runs on the host.
"""
from __future__ import annotations

import torch
from torch import Tensor

from models.config import PostprocessConfig
from models.heads import HeadOutputs
from models.targets import boxes_from_distances, level_points


def decode_candidates(outputs: HeadOutputs, config: PostprocessConfig) -> tuple[Tensor, Tensor]:
    """boxes [N, K, 4] (x1, y1, x2, y2, input pixels) and scores [N, K] with K = levels x pre_top_k.

    A level with fewer than pre_top_k locations fills its slots with zero boxes scoring 0, so K does not depend
    on the input size. With several classes a location scores with its best class.
    """
    all_boxes, all_scores = [], []
    for cls_logits, distances, centerness, stride in zip(outputs.cls_logits, outputs.box_distances,
                                                         outputs.centerness_logits, outputs.strides):
        batch, _, height, width = cls_logits.shape
        points = level_points(height, width, stride, cls_logits.device)  # [P, 2]
        probabilities = cls_logits.sigmoid().amax(dim=1).flatten(1)  # [N, P]
        probabilities = torch.where(probabilities > config.score_threshold, probabilities, 0.0)
        boxes = boxes_from_distances(points, distances.flatten(2).transpose(1, 2))  # [N, P, 4]
        scores = probabilities * centerness.sigmoid().flatten(1)  # [N, P]
        filler = probabilities.new_zeros((batch, config.pre_top_k))
        order = torch.cat([probabilities, filler], dim=1).topk(config.pre_top_k, dim=1).indices  # [N, pre_top_k]
        scores = torch.cat([scores, filler], dim=1).gather(1, order)
        boxes = torch.cat([boxes, filler[..., None].expand(-1, -1, 4)], dim=1)
        all_boxes.append(boxes.gather(1, order[..., None].expand(-1, -1, 4)))
        all_scores.append(scores)
    return torch.cat(all_boxes, dim=1), torch.cat(all_scores, dim=1)
