"""Tracking and detection metrics checked against py-motmetrics, TrackEval and hand-computed values.

The references get the same Euclidean centre-distance (or similarity) matrices, built here with scipy's cdist,
so any difference comes from the metric code. motmetrics' distance helpers use np.asfarray, gone in numpy 2,
so the tests pass distance matrices to MOTAccumulator.update directly.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from pipeline.errors import UserError
from pipeline.evaluation import evaluate_detections, evaluate_tracking, read_mot_file

mm = pytest.importorskip("motmetrics")
trackeval_hota = pytest.importorskip("trackeval.metrics.hota")

HALMSTAD = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "halmstad-ir-dev"
D = 5.0
MOTMETRICS_NAMES = {  # ours -> motmetrics
    "MOTA": "mota", "MOTP": "motp", "IDF1": "idf1", "IDP": "idp", "IDR": "idr", "num_switches": "num_switches",
    "num_false_positives": "num_false_positives", "num_misses": "num_misses", "num_matches": "num_matches",
    "num_fragmentations": "num_fragmentations", "mostly_tracked": "mostly_tracked",
    "partially_tracked": "partially_tracked", "mostly_lost": "mostly_lost", "num_gt": "num_objects",
    "num_predictions": "num_predictions", "num_frames": "num_frames",
}
HOTA_NAMES = ("HOTA", "DetA", "AssA", "LocA")


def _centres(rows):
    return rows[:, 2:4] + rows[:, 4:6] / 2


def _frame_rows(rows, frame):
    """Rows of one frame in increasing id order (the order evaluate_tracking uses, which matters only for ties)."""
    selected = rows[rows[:, 0] == frame]
    return selected[np.argsort(selected[:, 1], kind="stable")]


def motmetrics_reference(gt, pred, match_distance):
    acc = mm.MOTAccumulator()
    for frame in np.union1d(gt[:, 0], pred[:, 0]):
        g, p = _frame_rows(gt, frame), _frame_rows(pred, frame)
        distances = cdist(_centres(g), _centres(p))
        distances[distances > match_distance] = np.nan
        acc.update(g[:, 1].astype(int), p[:, 1].astype(int), distances, frameid=int(frame))
    summary = mm.metrics.create().compute(acc, metrics=list(MOTMETRICS_NAMES.values()), return_dataframe=False)
    return {ours: float(summary[theirs]) for ours, theirs in MOTMETRICS_NAMES.items()}


def trackeval_reference(gt, pred, match_distance):
    """TrackEval's HOTA on the data dict its datasets build: per-timestep ids remapped to 0..n-1."""
    gt_id_map = {v: i for i, v in enumerate(np.unique(gt[:, 1]))}
    pred_id_map = {v: i for i, v in enumerate(np.unique(pred[:, 1]))}
    data = {"num_gt_dets": len(gt), "num_tracker_dets": len(pred), "num_gt_ids": len(gt_id_map),
            "num_tracker_ids": len(pred_id_map), "gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for frame in np.union1d(gt[:, 0], pred[:, 0]):
        g, p = _frame_rows(gt, frame), _frame_rows(pred, frame)
        data["gt_ids"].append(np.array([gt_id_map[v] for v in g[:, 1]], dtype=int))
        data["tracker_ids"].append(np.array([pred_id_map[v] for v in p[:, 1]], dtype=int))
        data["similarity_scores"].append(np.maximum(0.0, 1.0 - cdist(_centres(g), _centres(p)) / match_distance))
    result = trackeval_hota.HOTA().eval_sequence(data)
    return {name: float(np.mean(result[name])) for name in HOTA_NAMES}


def assert_matches_references(gt, pred, match_distance=D):
    ours = evaluate_tracking(gt, pred, match_distance)
    expected = {**motmetrics_reference(gt, pred, match_distance), **trackeval_reference(gt, pred, match_distance)}
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, abs=1e-6, nan_ok=True), name
    return ours


def mot_rows(*rows):
    """[M, 6] rows from (frame, id, centre x, centre y) tuples, as 2x2 px boxes."""
    table = np.array(rows, dtype=float).reshape(-1, 4)
    return np.column_stack([table[:, :2], table[:, 2:4] - 1.0, np.full((len(table), 2), 2.0)])


def degrade(gt, seed, image_size=(320, 256)):
    """A plausible tracker output made from gt: lost detections, jitter, an id swap, a broken track, clutter."""
    rng = np.random.default_rng(seed)
    pred = gt[rng.random(len(gt)) > 0.1].copy()
    pred[:, 1] += 100
    pred[:, 2:4] += rng.normal(0.0, 2.0, (len(pred), 2))  # ~4 % of centres end up beyond 5 px
    ids, counts = np.unique(pred[:, 1], return_counts=True)
    first, second = ids[np.argsort(counts)[-2:]]
    middle = np.median(pred[:, 0])
    late_first = (pred[:, 0] >= middle) & (pred[:, 1] == first)
    late_second = (pred[:, 0] >= middle) & (pred[:, 1] == second)
    pred[late_first, 1], pred[late_second, 1] = second, first
    pred[(pred[:, 0] >= middle / 2) & (pred[:, 1] == first), 1] = 500  # the tracker loses and re-creates it
    frames = np.unique(gt[:, 0])
    clutter = [(f, 900 + k, *rng.uniform((0, 0), image_size)) for k in range(3) for f in frames if rng.random() < 0.1]
    near = gt[rng.random(len(gt)) < 0.05]  # decoys 1-4 px from a target: the matching must choose
    offsets = rng.uniform(1.0, 4.0, len(near))[:, None] * np.array([[0.6, 0.8]])
    decoys = np.column_stack([near[:, 0], 2000 + np.arange(len(near)), _centres(near) + offsets])
    return np.vstack([pred, mot_rows(*clutter), mot_rows(*decoys)])


@pytest.mark.parametrize("clip, seed", [("IR_DRONE_143", 1), ("IR_BIRD_027", 2), ("IR_BIRD_001", 3)])
def test_real_clips_with_degraded_gt_match_motmetrics_and_trackeval(clip, seed):
    path = HALMSTAD / clip / "gt" / "gt.txt"
    if not path.exists():
        pytest.skip(f"shared Halmstad data not found at {path}")
    gt = read_mot_file(path, ground_truth=True)
    pred = degrade(gt, seed)
    ours = assert_matches_references(gt, pred)
    # The degradation must exercise every kind of event, or agreement would prove little.
    assert ours["num_switches"] > 0 and ours["num_false_positives"] > 0 and ours["num_misses"] > 0
    assert ours["num_fragmentations"] > 0 and 0.1 < ours["HOTA"] < 0.9 and 0.1 < ours["MOTA"] < 0.9


def test_hand_made_sequence():
    # gt 1 moves along x, gt 2 along y, far apart. Predictions 7 (A), 8 (B), 9 (C):
    # frame 1: A 1 px from gt1, B 1 px from gt2                      -> 2 matches
    # frame 2: A 4 px from gt1, C 0.5 px from gt1; gt2 unseen         -> gt1 keeps A (still within 5 px) although
    #          C is closer: 1 match, C is a false positive, gt2 a miss
    # frame 3: B 2 px from gt1; gt2 unseen                          -> gt1 last had A: switch; gt2 a miss
    # frame 4: B on gt1, A 3 px from gt2                              -> gt1 keeps B: match; gt2 last had B: switch
    # MOTA = 1 - (misses 2 + switches 2 + FP 1) / 8 gt = 0.375; MOTP = (1+1+4+2+0+3) / 6 matches = 11/6 px.
    # IDF1: frames within 5 px: (1,A) 2, (1,B) 2, (2,B) 1, (2,A) 1, (1,C) 1; best one-to-one pairing, e.g.
    # 1-A + 2-B, gives IDTP = 3; 8 gt + 7 predictions -> IDF1 = 6/15 = 0.4, IDP = 3/7, IDR = 3/8.
    # gt2 is tracked in frames 1 and 4 only: 1 fragmentation, 50 % tracked (partially tracked).
    gt = mot_rows(*[(f, 1, 10 + f, 10) for f in range(1, 5)], *[(f, 2, 50, 50 + f) for f in range(1, 5)])
    pred = mot_rows((1, 7, 12, 10), (1, 8, 50, 52),
                    (2, 7, 16, 10), (2, 9, 12.5, 10),
                    (3, 8, 15, 10),
                    (4, 8, 14, 10), (4, 7, 50, 57))
    ours = assert_matches_references(gt, pred)
    assert ours["MOTA"] == pytest.approx(0.375)
    assert ours["MOTP"] == pytest.approx(11 / 6)
    assert (ours["num_misses"], ours["num_switches"], ours["num_false_positives"]) == (2, 2, 1)
    assert ours["IDF1"] == pytest.approx(0.4)
    assert (ours["IDP"], ours["IDR"]) == (pytest.approx(3 / 7), pytest.approx(3 / 8))
    assert (ours["num_fragmentations"], ours["mostly_tracked"], ours["partially_tracked"]) == (1, 1, 1)


def test_first_gt_in_id_order_keeps_a_shared_prediction():
    # Prediction 7 is matched to gt 1 in frame 1 and to gt 2 in frame 2 (gt 1 is absent then). In frame 3 both
    # gt last matched 7 and are within 5 px of it: gt 1 (first in id order, as motmetrics loops) keeps it at
    # 1.5 px, gt 2 takes 8 at 1 px, a switch. MOTA = 1 - 1 switch / 4 gt = 0.75; MOTP = (0+0+1.5+1) / 4.
    # Had gt 2 kept 7, gt 1 would take 8 at 4 px and MOTP would be 5.5 / 4.
    gt = mot_rows((1, 1, 10, 10), (2, 2, 12, 10), (3, 1, 10, 10), (3, 2, 13, 10))
    pred = mot_rows((1, 7, 10, 10), (2, 7, 12, 10), (3, 7, 11.5, 10), (3, 8, 14, 10))
    ours = assert_matches_references(gt, pred)
    assert (ours["MOTA"], ours["MOTP"], ours["num_switches"]) == (0.75, pytest.approx(2.5 / 4), 1)


def test_empty_predictions_miss_everything():
    gt = mot_rows((1, 1, 10, 10), (2, 1, 11, 10), (2, 2, 40, 40))
    ours = assert_matches_references(gt, np.zeros((0, 6)))
    assert (ours["MOTA"], ours["IDF1"], ours["HOTA"], ours["num_misses"]) == (0.0, 0.0, 0.0, 3)


def test_empty_gt_counts_false_positives_and_mota_is_undefined():
    pred = mot_rows((1, 5, 10, 10), (3, 5, 12, 10))
    ours = evaluate_tracking(np.zeros((0, 6)), pred)
    assert (ours["num_false_positives"], ours["IDF1"], ours["HOTA"], ours["num_frames"]) == (2, 0.0, 0.0, 2)
    assert math.isnan(ours["MOTA"])  # motmetrics says -inf; without gt there is nothing to be accurate about
    assert ours["HOTA"] == trackeval_reference(np.zeros((0, 6)), pred, D)["HOTA"]


def test_frame_present_only_in_predictions():
    gt = mot_rows((1, 1, 10, 10), (2, 1, 11, 10))
    pred = mot_rows((1, 3, 10, 10), (2, 3, 11, 10), (3, 3, 12, 10))
    ours = assert_matches_references(gt, pred)
    assert (ours["num_frames"], ours["num_false_positives"], ours["num_matches"]) == (3, 1, 2)


def test_match_distance_is_inclusive_and_configurable():
    gt = mot_rows((1, 1, 10, 10))
    pred = mot_rows((1, 2, 13, 14))  # exactly 5 px away
    assert evaluate_tracking(gt, pred)["num_matches"] == 1
    assert evaluate_tracking(gt, pred, match_distance_px=4.9)["num_matches"] == 0
    with pytest.raises(ValueError, match="match_distance_px"):
        evaluate_tracking(gt, pred, match_distance_px=0)


def test_repeated_id_in_a_frame_is_rejected():
    with pytest.raises(ValueError, match="repeat id 1 in frame 1"):
        evaluate_tracking(mot_rows((1, 1, 10, 10), (1, 1, 30, 30)), np.zeros((0, 6)))


def test_read_mot_file_drops_ignored_gt_rows_only(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,10,20,4,6,1,2,1\n1,2,30,40,4,6,0,2,1\n\n2,1,11,20,4,6,1,2,1\n")
    assert read_mot_file(path, ground_truth=True).tolist() == [[1, 1, 10, 20, 4, 6], [2, 1, 11, 20, 4, 6]]
    assert len(read_mot_file(path)) == 3  # in tracker output the 7th column is a confidence


def test_read_mot_file_accepts_empty_and_space_separated_files(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    assert read_mot_file(tmp_path / "empty.txt").shape == (0, 6)
    (tmp_path / "spaces.txt").write_text("3 7 1.5 2.5 3 4 0.9 -1 -1 -1\n")
    assert read_mot_file(tmp_path / "spaces.txt").tolist() == [[3, 7, 1.5, 2.5, 3, 4]]


@pytest.mark.parametrize("content, problem", [
    ("1,1,10,20,4,6,1\n1,2,oops,40,4,6,1\n", "line 2: a value is not a number"),
    ("1,1,10,20\n", "line 1: 4 values"),
    ("0,1,10,20,4,6\n", "line 1: frame and id must be whole numbers"),
    ("1,1,10,nan,4,6\n", "line 1: a value is NaN"),
    ("1,1,10,20,-4,6\n", "line 1: box width and height"),
    ("1,1,10,20,4,6\n2,1,10,20,4,6\n2,1,11,20,4,6\n", "lines 2 and 3: id 1 appears twice in frame 2"),
])
def test_read_mot_file_names_file_and_line_of_bad_input(tmp_path, content, problem):
    path = tmp_path / "tracks.txt"
    path.write_text(content)
    with pytest.raises(UserError, match=problem) as error:
        read_mot_file(path)
    assert str(path) in str(error.value)


def test_read_mot_file_reports_missing_file(tmp_path):
    with pytest.raises(UserError, match="cannot read MOT file .*missing.txt"):
        read_mot_file(tmp_path / "missing.txt")


def test_pd_and_false_alarms_by_hand():
    gt = mot_rows((1, 1, 10, 10), (1, 2, 20, 20),
                  (2, 1, 10, 10),
                  (4, 1, 0, 0), (4, 2, 8, 0))
    detections = {
        1: np.array([[11, 10], [20, 24.9], [40, 40]]),  # 1 px and 4.9 px -> 2 matched, (40, 40) a false alarm
        2: np.zeros((0, 2)),  # gt missed
        3: np.array([[5, 5]]),  # no gt: a false alarm
        # (4, 0) is 4 px from both gt; the nearest-first choice (4, 0)-(0, 0) would leave (8, 0) unmatched,
        # the one-to-one matching pairs (-4.5, 0)-(0, 0) and (4, 0)-(8, 0): 2 matched
        4: np.array([[4, 0], [-4.5, 0]]),
    }
    # Pd = 4 matched / 5 gt; false alarms: 2 over 4 frames
    result = evaluate_detections(gt, detections, match_distance_px=5.0)
    assert result["pd"] == pytest.approx(0.8)
    assert result["false_alarms_per_frame"] == pytest.approx(0.5)
    assert (result["num_matched"], result["num_false_alarms"], result["num_detections"]) == (4, 2, 6)
    assert (result["num_gt"], result["num_frames"]) == (5, 4)


def test_detections_missing_a_gt_frame_count_it_as_missed():
    gt = mot_rows((1, 1, 10, 10), (2, 1, 10, 10))
    result = evaluate_detections(gt, {1: np.array([[10.0, 10.0]])})
    assert (result["pd"], result["false_alarms_per_frame"], result["num_frames"]) == (0.5, 0.0, 2)
    with pytest.raises(ValueError, match="frame 1 must be a finite"):
        evaluate_detections(gt, {1: np.array([10.0, 10.0])})
