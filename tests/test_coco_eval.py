"""COCO-style AP50 against a hand-computed example and against pycocotools' COCOeval on random detections."""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from pipeline.types import Detections
from engines.postprocess import box_iou
from training.coco_eval import coco_average_precision


def dets(boxes, scores) -> Detections:
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32))


def test_iou_has_no_plus_one():
    # [0,0,4,4] (16 px) and [2,0,6,4] (16 px) share 2 x 4 = 8 px: IoU 8 / 24.
    assert box_iou(np.array([0, 0, 4, 4.]), np.array([[2, 0, 6, 4.]]))[0] == pytest.approx(1 / 3)
    assert box_iou(np.array([0, 0, 4, 4.]), np.array([[4, 0, 8, 4.]]))[0] == 0


def test_hand_computed_ap():
    # Image 1: gt A, B; image 2: gt C. Ranked detections: 0.9 on A (TP), 0.8 on nothing (FP), 0.7 on C (TP), 0.6 a
    # second hit on A (FP: A is taken and it overlaps nothing else). B is never found.
    # Recall/precision after each: (1/3, 1), (1/3, 1/2), (2/3, 2/3), (2/3, 1/2); envelope (1, 2/3, 2/3, 1/2).
    # 101 recall points: r = 0 .. 0.33 (34 points) -> 1; 0.34 .. 0.66 (33 points) -> 2/3; 0.67 .. 1 -> 0.
    a, b, c = [0, 0, 4, 4], [20, 20, 24, 24], [10, 10, 14, 14]
    result = coco_average_precision(
        [dets([a, [40, 40, 44, 44], [0, 0, 4, 4.5]], [0.9, 0.8, 0.6]), dets([c], [0.7])],
        [np.array([a, b], float), np.array([c], float)])
    assert result.ap == pytest.approx((34 * 1 + 33 * 2 / 3) / 101)
    assert result.recall == pytest.approx(2 / 3) and result.num_gt == 3 and result.num_detections == 4


def test_a_detection_may_take_the_next_best_free_box():
    # Two touching gt boxes; the best detection matches the first, the second detection overlaps the first more but
    # it is taken, so it takes the second (IoU >= 0.5): COCO counts 2 TPs where VOC would count a FP.
    gt = np.array([[0, 0, 4, 4], [3, 0, 7, 4]], float)
    result = coco_average_precision([dets([[0, 0, 4, 4], [2, 0, 6, 4]], [0.9, 0.8])], [gt])
    assert result.recall == 1.0 and result.ap == pytest.approx(1.0)


def test_no_ground_truth_gives_nan_and_max_detections_caps_each_image():
    assert math.isnan(coco_average_precision([dets([[0, 0, 2, 2]], [0.5])], [np.zeros((0, 4))]).ap)
    boxes = [[0, 0, 4, 4]] * 3
    capped = coco_average_precision([dets(boxes, [0.3, 0.2, 0.1])], [np.array([[0, 0, 4, 4.]])], max_detections=2)
    assert capped.num_detections == 2


def test_matches_pycocotools_on_random_scenes():
    coco = pytest.importorskip("pycocotools.coco")
    cocoeval = pytest.importorskip("pycocotools.cocoeval")
    rng = np.random.default_rng(3)
    images, annotations, results, ours_dets, ours_gt = [], [], [], [], []
    for image_id in range(1, 31):
        n = int(rng.integers(0, 8))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(2, 12, (n, 2))
        gt = np.concatenate([xy, xy + wh], axis=1)
        jitter = np.tile(rng.normal(0, 1.5, (n, 2)), 2)  # moved boxes (independent corners could invert one)
        found = (gt + jitter)[rng.random(n) < 0.7]
        clutter_xy = rng.uniform(0, 300, (int(rng.integers(0, 5)), 2))
        found = np.concatenate([found, np.concatenate([clutter_xy, clutter_xy + 6], axis=1)])
        # Both sides see the float32 values that Detections holds.
        gt, found = gt.astype(np.float32).astype(float), found.astype(np.float32).astype(float)
        scores = rng.random(len(found)).astype(np.float32).astype(float)
        images.append({"id": image_id, "width": 320, "height": 320})
        for box in gt:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                                "area": float((box[2] - box[0]) * (box[3] - box[1]))})
        for box, score in zip(found, scores):
            results.append({"image_id": image_id, "category_id": 1, "score": float(score),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
        ours_gt.append(gt)
        ours_dets.append(Detections(found.astype(np.float32), scores.astype(np.float32)))
    with contextlib.redirect_stdout(io.StringIO()):
        truth = coco.COCO()
        truth.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "target"}]}
        truth.createIndex()
        evaluation = cocoeval.COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.params.iouThrs = np.array([0.5])
        evaluation.params.maxDets = [100]
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
    reference = float(evaluation.eval["precision"][0, :, 0, 0, 0].mean())
    assert coco_average_precision(ours_dets, ours_gt).ap == pytest.approx(reference, abs=1e-9)
