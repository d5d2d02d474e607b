"""VOC AP (mmdet eval_map with legacy +1 coordinates), Pd/Fa and the PR-curve writer, against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.types import Detections
from training.voc_eval import (average_precision_11point, average_precision_area, evaluate_voc, legacy_iou, pd_fa,
                               pd_at_false_alarm_rates, write_pr_curve)


def dets(boxes, scores) -> Detections:
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32))


def box(x, y, size=3):
    """A legacy box of (size + 1) x (size + 1) pixels with top-left (x, y)."""
    return [x, y, x + size, y + size]


# ---------------------------------------------------------------------------------------------------- legacy IoU
def test_legacy_iou_counts_the_end_pixel():
    # [0,0,3,3] covers 4x4 = 16 px. [3,0,6,3] shares column x = 3: overlap (3 - 3 + 1) * 4 = 4, union 16 + 16 - 4 = 28.
    # Without the +1 these boxes would only touch (IoU 0).
    assert legacy_iou([[0, 0, 3, 3]], [[3, 0, 6, 3]])[0, 0] == pytest.approx(4 / 28)
    # [0,0,3,3] vs [4,0,7,3]: touching edges, no shared pixel -> 0.
    assert legacy_iou([[0, 0, 3, 3]], [[4, 0, 7, 3]])[0, 0] == 0
    # A degenerate box [5,5,5,5] is one pixel with itself: IoU 1.
    assert legacy_iou([[5, 5, 5, 5]], [[5, 5, 5, 5]])[0, 0] == 1


def test_iou_exactly_half_under_the_plus_one_convention_is_a_true_positive():
    # gt [0,0,3,3]: 4x4 = 16 px. detection [0,0,3,1]: 4x2 = 8 px, fully inside -> IoU 8 / 16 = 0.5 >= 0.5: TP.
    # (With plain widths it would be 3 / 9 = 0.33, a miss.)
    result = evaluate_voc([dets([[0, 0, 3, 1]], [0.9])], [np.array([[0, 0, 3, 3]])])
    assert result.recall == 1.0 and result.ap_area == 1.0
    # One row less (4x1 = 4 px, IoU 0.25): FP.
    assert evaluate_voc([dets([[0, 0, 3, 0]], [0.9])], [np.array([[0, 0, 3, 3]])]).recall == 0.0


# ---------------------------------------------------------------------------------------------------- AP by hand
def test_hand_computed_ap():
    # 4 gt: image A g1, g2; image B g3, g4. Five detections, ranked by score:
    #   d1 0.9 A on g1 -> TP      d2 0.8 B on nothing -> FP    d3 0.7 B on g3 -> TP
    #   d4 0.6 A on g1 again -> FP (g1 already taken)           d5 0.5 A on g2 -> TP        g4 is never found.
    # cumulative TP 1 1 2 2 3, FP 0 1 1 2 2
    # recall    = TP / 4        = .25  .25  .50  .50  .75
    # precision = TP / (TP + FP) = 1    .5   2/3  .5   .6
    # 11-point: t = 0, .1, .2 -> max precision at recall >= t = 1 (3 thresholds)
    #           t = .3, .4, .5 -> points 3..5: max(2/3, .5, .6) = 2/3 (3 thresholds)
    #           t = .6, .7     -> point 5 (recall .75): .6 (2 thresholds)
    #           t = .8, .9, 1  -> no point: 0
    #           AP = (3 * 1 + 3 * 2/3 + 2 * .6) / 11 = 6.2 / 11 = 0.563636...
    # area: recall 0, .25, .25, .5, .5, .75, 1 with precision 0, 1, .5, 2/3, .5, .6, 0 made non-increasing from the
    #       right: 1, 1, 2/3, 2/3, .6, .6, 0. Steps: .25 * 1 + .25 * 2/3 + .25 * .6 + .25 * 0 = .566667
    g1, g2, g3, g4 = box(10, 10), box(30, 30), box(50, 50), box(70, 70)
    image_a = dets([g1, box(30, 30), g1], [0.6, 0.5, 0.9])  # d4, d5, d1 in input order: ranking must sort them
    image_b = dets([box(100, 100), g3], [0.8, 0.7])
    result = evaluate_voc([image_a, image_b], [np.array([g1, g2]), np.array([g3, g4])])
    np.testing.assert_allclose(result.recalls, [.25, .25, .5, .5, .75])
    np.testing.assert_allclose(result.precisions, [1, .5, 2 / 3, .5, .6])
    assert result.ap_11point == pytest.approx(6.2 / 11)
    assert result.ap_area == pytest.approx(.25 + .25 * 2 / 3 + .25 * .6)
    assert result.recall == pytest.approx(.75)
    assert (result.num_gt, result.num_detections) == (4, 5)


def test_eleven_point_thresholds_are_mmdets_arange():
    # 5 gt, 3 TP first: recall .2 .4 .6, precision 1. np.arange(0, 1.001, 0.1)[6] is 0.6000000000000001 > 3/5, so
    # recall 0.6 does not reach t = 0.6: AP = 6 / 11 (t = 0 ... 0.5), not 7 / 11 as exact thresholds would give.
    recalls, precisions = np.array([.2, .4, 3 / 5]), np.ones(3)
    assert average_precision_11point(recalls, precisions) == pytest.approx(6 / 11)
    assert average_precision_area(recalls, precisions) == pytest.approx(0.6)


def test_detection_whose_best_gt_is_taken_is_a_false_positive():
    # VOC devkit rule: each detection only tries its highest-IoU gt. d2 overlaps g1 best (IoU 1) and g2 at 0.6, but
    # g1 is already taken by d1, so d2 is FP and g2 stays missed.
    g1, g2 = [0, 0, 9, 9], [0, 2, 9, 11]  # 10x10 px boxes sharing rows 2..9: IoU 80 / 120 = 0.67
    result = evaluate_voc([dets([g1, g1], [0.9, 0.8])], [np.array([g1, g2])])
    np.testing.assert_allclose(result.recalls, [0.5, 0.5])
    np.testing.assert_allclose(result.precisions, [1.0, 0.5])


def test_difficult_gt_neither_counts_nor_penalises():
    # g_difficult is matched by the top detection: ignored (no TP, no FP); the second finds the normal gt.
    # #gt = 1 -> ranked flags: (ignored), TP -> recall 0, 1; precision 0 / eps = 0, then 1 / 1.
    gt = np.array([box(0, 0), box(20, 20)])
    result = evaluate_voc([dets([box(0, 0), box(20, 20)], [0.9, 0.8])], [gt], [np.array([True, False])])
    assert result.num_gt == 1
    np.testing.assert_allclose(result.recalls, [0.0, 1.0])
    np.testing.assert_allclose(result.precisions, [0.0, 1.0])
    assert result.ap_area == 1.0 and result.ap_11point == 1.0


# ---------------------------------------------------------------------------------------------------- edge cases
def test_perfect_detector_scores_one():
    rng = np.random.default_rng(3)
    gt = [np.array([box(40 * k, 40 * i) for k in range(n)]) for i, n in enumerate((3, 5, 1))]  # disjoint boxes
    perfect = [dets(g, rng.uniform(0.1, 1.0, len(g))) for g in gt]
    result = evaluate_voc(perfect, gt)
    assert (result.ap_11point, result.ap_area, result.recall) == (1.0, 1.0, 1.0)


def test_no_detections_gives_zero_and_no_gt_gives_nan():
    gt = [np.array([box(0, 0)])]
    empty = evaluate_voc([Detections.empty()], gt)
    assert (empty.ap_11point, empty.ap_area, empty.recall, empty.num_detections) == (0.0, 0.0, 0.0, 0)
    no_gt = evaluate_voc([dets([box(0, 0)], [0.5])], [np.zeros((0, 4))])
    assert math.isnan(no_gt.ap_area) and math.isnan(no_gt.ap_11point) and math.isnan(no_gt.recall)
    assert math.isnan(evaluate_voc([], []).ap_area)


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="one detection set"):
        evaluate_voc([Detections.empty()], [])
    with pytest.raises(ValueError, match="finite"):
        evaluate_voc([dets([box(0, 0)], [float("nan")])], [np.array([box(0, 0)])])


# ---------------------------------------------------------------------------------------------------- Pd / Fa
def test_pd_fa_by_centroid_distance():
    # Image 1: gt centres (11.5, 11.5) and (51.5, 51.5). Detections: centre (13.5, 11.5) is 2 px away -> match;
    # centre (100, 100) -> false alarm; a 0.1-score detection on the second gt is below the threshold.
    # Image 2: no gt, one detection -> false alarm. Pd = 1 / 2; false alarms = 2 over 2 images = 1 per image.
    gt = [np.array([box(10, 10), box(50, 50)]), np.zeros((0, 4))]
    found = [dets([box(12, 10), [99, 99, 101, 101], box(50, 50)], [0.9, 0.8, 0.1]), dets([box(5, 5)], [0.7])]
    result = pd_fa(found, gt, score_threshold=0.5)
    assert result["pd"] == 0.5 and result["false_alarms_per_image"] == 1.0
    assert (result["num_matched"], result["num_false_alarms"], result["num_images"]) == (1, 2, 2)
    # 4 px apart is beyond the default 3 px but within 5 px.
    far = [dets([box(14, 10)], [0.9]), Detections.empty()]
    assert pd_fa(far, gt, score_threshold=0.5)["num_matched"] == 0
    assert pd_fa(far, gt, score_threshold=0.5, match_distance_px=5)["num_matched"] == 1


def test_pd_at_false_alarm_rates_interpolates_between_thresholds():
    # Image 1: a hit scoring 0.9 and a false alarm 0.7; image 2: a false alarm 0.8 and a hit 0.6. Thresholds from the
    # top: 0.95 -> Pd 0, 0 false alarms per image; 0.85 -> Pd 1/2, 0; 0.5 -> Pd 1, 2 / 2 images = 1; 0.2 -> the same.
    gt = [np.array([box(10, 10)]), np.array([box(30, 30)])]
    found = [dets([box(10, 10), box(60, 60)], [0.9, 0.7]), dets([box(80, 80), box(30, 30)], [0.8, 0.6])]
    sweep, at_rate = pd_at_false_alarm_rates(found, gt, [0.0, 0.5, 1.0, 1.5], thresholds=[0.2, 0.5, 0.85, 0.95])
    assert [(p["score_threshold"], p["pd"], p["false_alarms_per_image"]) for p in sweep] == [
        (0.2, 1, 1), (0.5, 1, 1), (0.85, 0.5, 0), (0.95, 0, 0)]
    # At 0 false alarms the best threshold (0.85) gives 1/2; at 0.5 halfway from (0, 1/2) to (1, 1); 1.5 is never
    # reached, so the lowest threshold's Pd holds there.
    assert at_rate == {0.0: 0.5, 0.5: pytest.approx(0.75), 1.0: 1.0, 1.5: 1.0}
    # At 0.75 alone: Pd 1/2 with 1 / 2 false alarms per image; fewer false alarms are out of the sweep's reach.
    assert pd_at_false_alarm_rates(found, gt, [0.25, 0.5], thresholds=[0.75])[1] == {0.25: None, 0.5: 0.5}


def test_pr_curve_png_is_written(tmp_path):
    result = evaluate_voc([dets([box(0, 0), box(50, 50)], [0.9, 0.4])], [np.array([box(0, 0), box(20, 20)])])
    path = write_pr_curve(result, tmp_path / "plots" / "pr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
