"""The point-target tracker: batched Kalman filter against filterpy, gating and association against brute
force, lifecycle, clusters and crossings end to end, bad input, and config validation."""
import itertools

import cv2
import numpy as np
import pytest
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter
from scipy.optimize import linear_sum_assignment

from pipeline.errors import ConfigError, UserError
from pipeline.schema import build
from pipeline.types import Detections, TrackStatus
from trackers import PointTargetTracker, TrackerConfig, association, create_tracker, gating, kalman
from trackers.association import assign_gnn, gate_components
from trackers.camera_motion import PhaseCorrelationMotion
from trackers.gating import GatedPairs, gate_threshold, mahalanobis_gate, pairs_within_radius
from trackers.initiation import two_point_states
from trackers.jpda import (EXACT_MAX_SHORT_SIDE, belief_propagation_marginals, exact_marginals, jpda_marginals,
                           pair_weights)
from trackers.motion import MotionModel, discrete_white_noise, transition


def detections_at(points, size=3.0, scores=None, covariances=None) -> Detections:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    boxes = np.concatenate([points - size / 2, points + size / 2], axis=1).astype(np.float32)
    scores = np.full(len(points), 0.9, np.float32) if scores is None else np.asarray(scores, np.float32)
    return Detections(boxes, scores, covariances=covariances)


def random_spd(rng, n, dims, scale=1.0):
    A = rng.normal(0, scale, (n, dims, dims))
    return A @ A.transpose(0, 2, 1) + 0.1 * np.eye(dims)


def confirmed_id_near(tracks, point, within=2.0):
    """Id of the confirmed track nearest ``point`` (None if none within ``within`` px)."""
    confirmed = tracks.select(tracks.status == TrackStatus.CONFIRMED)
    if len(confirmed) == 0:
        return None
    distances = np.linalg.norm(confirmed.states[:, :2] - point, axis=1)
    return int(confirmed.ids[np.argmin(distances)]) if distances.min() <= within else None


# --- motion model and batched Kalman filter --------------------------------------------------------------

@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("dt", [0.5, 1.0, 3.0])
def test_process_noise_is_filterpys_discrete_white_noise(order, dt):
    expected = Q_discrete_white_noise(order, dt, 0.7, block_size=2, order_by_dim=False)
    np.testing.assert_allclose(discrete_white_noise(order, dt, 0.7), expected, rtol=1e-15, atol=0)


def test_transition_integrates_velocity_and_acceleration():
    cv = np.array([[1, 0, 2, 0], [0, 1, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(transition(2, 2.0), cv)
    ca = transition(3, 2.0)
    np.testing.assert_array_equal(ca[:4, :4], cv)
    np.testing.assert_array_equal(ca[:, 4], [2.0, 0, 2.0, 0, 1, 0])  # x += a dt^2 / 2, vx += a dt
    np.testing.assert_array_equal(ca[4:, :4], 0)


@pytest.mark.parametrize("motion", ["cv", "ca"])
def test_batched_filter_matches_filterpy_over_1000_steps(motion):
    """Many tracks at once, random time steps, camera shifts, update subsets and measurement covariances."""
    rng = np.random.default_rng(3)
    model = MotionModel.named(motion, 0.3)
    n_tracks, dims = 12, model.state_dims
    x, P = rng.normal(0, 5, (n_tracks, dims)), random_spd(rng, n_tracks, dims, 2.0)
    reference = []
    for t in range(n_tracks):
        kf = KalmanFilter(dim_x=dims, dim_z=2)
        kf.x, kf.P, kf.H, kf.B = x[t][:, None].copy(), P[t].copy(), np.eye(2, dims), np.eye(dims, 2)
        reference.append(kf)
    for _ in range(1000):
        F, Q = model.matrices(float(rng.integers(1, 4)))
        shift = rng.normal(0, 2, 2) if rng.random() < 0.3 else None
        x, P = kalman.predict(x, P, F, Q, shift)
        for kf in reference:
            kf.F, kf.Q = F, Q
            kf.predict(u=None if shift is None else shift[:, None])
        updated = np.flatnonzero(rng.random(n_tracks) < 0.7)
        z, R = rng.normal(0, 10, (len(updated), 2)), random_spd(rng, len(updated), 2)
        x[updated], P[updated] = kalman.update(x[updated], P[updated], z, R)
        for k, t in enumerate(updated):
            reference[t].update(z[k], R=R[k])
        np.testing.assert_allclose(x, [kf.x[:, 0] for kf in reference], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(P, [kf.P for kf in reference], rtol=1e-9, atol=1e-9)


def test_merge_of_one_certain_hypothesis_is_the_kalman_update():
    rng = np.random.default_rng(0)
    x, P = rng.normal(size=(3, 4)), random_spd(rng, 3, 4)
    z, R = rng.normal(size=(3, 2)), random_spd(rng, 3, 2)
    x_post, P_post = kalman.update(x, P, z, R)
    x_merged, P_merged = kalman.merge_hypotheses(x, P, np.zeros(3), np.arange(3), np.ones(3), x_post, P_post)
    np.testing.assert_array_equal(x_merged, x_post)
    np.testing.assert_array_equal(P_merged, P_post)


def test_merge_matches_the_mixture_moments():
    rng = np.random.default_rng(1)
    x, P = rng.normal(size=(2, 4)), random_spd(rng, 2, 4)
    pair_tracks = np.array([0, 0, 1])
    x_pairs, P_pairs = rng.normal(size=(3, 4)), random_spd(rng, 3, 4)
    weights, miss = np.array([0.5, 0.3, 0.6]), np.array([0.2, 0.4])
    x_merged, P_merged = kalman.merge_hypotheses(x, P, miss, pair_tracks, weights, x_pairs, P_pairs)
    for t in range(2):
        means = [x[t]] + [x_pairs[k] for k in np.flatnonzero(pair_tracks == t)]
        covs = [P[t]] + [P_pairs[k] for k in np.flatnonzero(pair_tracks == t)]
        w = np.r_[miss[t], weights[pair_tracks == t]]
        mean = sum(wk * m for wk, m in zip(w, means))
        cov = sum(wk * (c + np.outer(m - mean, m - mean)) for wk, m, c in zip(w, means, covs))
        np.testing.assert_allclose(x_merged[t], mean, rtol=1e-12)
        np.testing.assert_allclose(P_merged[t], cov, rtol=1e-12)


def test_two_point_start_differences_positions_with_exact_covariance():
    R1, R2 = np.diag([1.0, 2.0])[None], np.diag([0.5, 0.25])[None]
    x, P = two_point_states(np.array([[10.0, 20.0]]), R1, np.array([[16.0, 18.0]]), R2, np.array([2]), 4, 0.0)
    np.testing.assert_allclose(x[0], [16, 18, 3, -1])
    np.testing.assert_allclose(np.diag(P[0]), [0.5, 0.25, 1.5 / 4, 2.25 / 4])
    np.testing.assert_allclose([P[0, 0, 2], P[0, 1, 3]], [0.25, 0.125])  # cov(p, v) = R2 / dt


# --- gating ---------------------------------------------------------------------------------------------

def test_gate_threshold_is_chi_square_with_two_degrees_of_freedom():
    for p in (0.9, 0.99, 0.999):  # with 2 dof the chi-square quantile is -2 ln(1 - p)
        assert gate_threshold(p) == pytest.approx(-2 * np.log(1 - p), rel=1e-12)


@pytest.mark.parametrize("aspect", [(1000, 50), (50, 1000), (300, 300)])
def test_pairs_within_radius_equals_brute_force(aspect):
    """Points also beyond the targets' extent on every side, radii from 0 to far wider than the median."""
    rng = np.random.default_rng(2)
    points, targets = rng.uniform(-40, np.add(aspect, 40), (300, 2)), rng.uniform(0, aspect, (400, 2))
    radii = np.r_[rng.uniform(0, 30, 290), rng.uniform(100, 400, 10)]
    rows, cols = pairs_within_radius(points, radii, targets)
    distances = np.linalg.norm(points[:, None] - targets[None], axis=2)
    expected = set(zip(*np.nonzero(distances <= radii[:, None])))
    assert set(zip(rows.tolist(), cols.tolist())) == expected and len(rows) == len(expected) > 100
    assert np.all(np.diff(rows) >= 0)


@pytest.mark.parametrize("all_pairs_max", [0, 10**9], ids=["pre-gate", "all-pairs"])
def test_mahalanobis_gate_equals_brute_force(monkeypatch, all_pairs_max):
    monkeypatch.setattr(gating, "ALL_PAIRS_MAX", all_pairs_max)
    rng = np.random.default_rng(4)
    positions, z = rng.uniform(0, 200, (80, 2)), rng.uniform(0, 200, (90, 2))
    P, R = random_spd(rng, 80, 2, 3.0), random_spd(rng, 90, 2, 1.0)
    threshold = gate_threshold(0.99)
    pairs = mahalanobis_gate(positions, P, z, R, threshold)
    expected = {}
    for t, j in itertools.product(range(80), range(90)):
        S, y = P[t] + R[j], z[j] - positions[t]
        d2 = y @ np.linalg.inv(S) @ y
        if d2 <= threshold:
            expected[(t, j)] = d2 + np.log(np.linalg.det(S))
    got = dict(zip(zip(pairs.tracks.tolist(), pairs.detections.tolist()), pairs.costs))
    assert got.keys() == expected.keys() and len(got) > 20
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-9)


# --- association ----------------------------------------------------------------------------------------

def test_gate_components_are_connected_components():
    pairs = GatedPairs(np.array([0, 1, 1, 3, 4]), np.array([0, 0, 2, 3, 3]), np.zeros(5))
    tracks, detections = gate_components(pairs, 5, 5)
    assert tracks[0] == tracks[1] == detections[0] == detections[2]
    assert tracks[3] == tracks[4] == detections[3] != tracks[0]
    assert len({tracks[2], detections[1], detections[4], tracks[0], tracks[3]}) == 5


def exhaustive_gnn(pairs: GatedPairs, n_tracks: int) -> set:
    """The most pairs, then the least total cost, by trying every set of gated pairs."""
    costs = {(t, j): c for t, j, c in zip(pairs.tracks.tolist(), pairs.detections.tolist(), pairs.costs)}
    best, best_key = set(), (0, 0.0)
    options = [[None] + [j for (tt, j) in costs if tt == t] for t in range(n_tracks)]
    for choice in itertools.product(*options):
        used = [j for j in choice if j is not None]
        if len(used) != len(set(used)):
            continue
        chosen = {(t, j) for t, j in enumerate(choice) if j is not None}
        key = (-len(chosen), sum(costs[p] for p in chosen))
        if not best or key < best_key:
            best, best_key = chosen, key
    return best


@pytest.mark.parametrize("seed", range(40))
def test_gnn_equals_exhaustive_search_on_random_clusters(seed):
    rng = np.random.default_rng(seed)
    n_tracks, n_detections = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    mask = rng.random((n_tracks, n_detections)) < rng.uniform(0.2, 0.8)
    tracks, detections = np.nonzero(mask)
    pairs = GatedPairs(tracks, detections, rng.uniform(-3, 12, len(tracks)))
    association = assign_gnn(pairs, n_tracks, n_detections)
    got = set(zip(association.pair_tracks.tolist(), association.pair_detections.tolist()))
    assert got == exhaustive_gnn(pairs, n_tracks)
    assert np.array_equal(association.miss_weights == 0, np.isin(np.arange(n_tracks), association.pair_tracks))


@pytest.mark.parametrize("block_max_tracks", [4, association.BLOCK_MAX_TRACKS])
def test_gnn_on_many_clusters_equals_one_hungarian_solve_of_the_whole_matrix(monkeypatch, block_max_tracks):
    """Hundreds of tracks in clusters of every size (some merged into big components): solving per component
    and per block must give what one Hungarian solve of the dense T x N matrix gives (most pairs, least cost)."""
    monkeypatch.setattr(association, "BLOCK_MAX_TRACKS", block_max_tracks)
    rng = np.random.default_rng(11)
    centres = rng.uniform(0, 400, (40, 2))
    sizes = rng.integers(1, 25, len(centres))
    tracks_xy = np.concatenate([c + rng.normal(0, 4, (n, 2)) for c, n in zip(centres, sizes)])
    detections_xy = np.concatenate([tracks_xy[rng.random(len(tracks_xy)) < 0.85] + rng.normal(0, 1, (1, 2)),
                                    rng.uniform(0, 400, (30, 2))])
    distances = np.linalg.norm(tracks_xy[:, None] - detections_xy[None], axis=2)
    tracks, detections = np.nonzero(distances <= 4.0)
    pairs = GatedPairs(tracks, detections, distances[tracks, detections] ** 2 + rng.uniform(-1, 1, len(tracks)))
    n_tracks, n_detections = len(tracks_xy), len(detections_xy)
    got = assign_gnn(pairs, n_tracks, n_detections)

    matrix = np.full((n_tracks, n_detections), 1e6)
    matrix[tracks, detections] = pairs.costs
    rows, cols = linear_sum_assignment(matrix)
    gated = matrix[rows, cols] < 1e6
    assert len(got.pair_tracks) == np.count_nonzero(gated) > 100
    cost = dict(zip(zip(tracks.tolist(), detections.tolist()), pairs.costs))
    got_cost = sum(cost[pair] for pair in zip(got.pair_tracks.tolist(), got.pair_detections.tolist()))
    assert got_cost == pytest.approx(matrix[rows, cols][gated].sum(), abs=1e-9)
    assert len(set(got.pair_detections.tolist())) == len(got.pair_detections)
    assert np.all(np.diff(got.pair_tracks) > 0)  # at most one pair per track, sorted by track


def exhaustive_jpda(pairs: GatedPairs, psi: np.ndarray, n_tracks: int) -> np.ndarray:
    """Pair marginals by summing the weight of every joint event."""
    index = {(t, j): k for k, (t, j) in enumerate(zip(pairs.tracks.tolist(), pairs.detections.tolist()))}
    options = [[None] + [j for (tt, j) in index if tt == t] for t in range(n_tracks)]
    marginals, total = np.zeros(len(psi)), 0.0
    for choice in itertools.product(*options):
        used = [j for j in choice if j is not None]
        if len(used) != len(set(used)):
            continue
        members = [index[(t, j)] for t, j in enumerate(choice) if j is not None]
        weight = np.prod(psi[members])
        marginals[members] += weight
        total += weight
    return marginals / total


@pytest.mark.parametrize("seed", range(30))
def test_jpda_marginals_equal_enumeration_of_joint_events(seed):
    rng = np.random.default_rng(100 + seed)
    n_tracks, n_detections = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    tracks, detections = np.nonzero(rng.random((n_tracks, n_detections)) < 0.7)
    pairs = GatedPairs(tracks, detections, rng.uniform(0, 10, len(tracks)))
    association = jpda_marginals(pairs, n_tracks, n_detections, 0.9, 0.99, 1e-3)
    expected = exhaustive_jpda(pairs, pair_weights(pairs, 0.9, 0.99, 1e-3), n_tracks)
    np.testing.assert_allclose(association.pair_weights, expected, atol=1e-12)
    np.testing.assert_allclose(association.miss_weights + np.bincount(tracks, expected, minlength=n_tracks), 1.0)


def test_clusters_beyond_the_exact_limit_use_belief_propagation_exact_on_trees():
    """A chain (a tree) with more tracks and detections than the exact solver takes: jpda_marginals must still
    give the exact answer (computed here with exact_marginals, checked against enumeration above)."""
    n = EXACT_MAX_SHORT_SIDE + 2
    tracks = np.repeat(np.arange(n), 2)[:-1]  # track t gates detections t and t + 1: 0-0, 0-1, 1-1, 1-2, ...
    detections = (np.arange(2 * n - 1) + 1) // 2
    pairs = GatedPairs(tracks, detections, np.random.default_rng(5).uniform(0, 9, len(tracks)))
    psi = pair_weights(pairs, 0.9, 0.99, 1e-3)
    matrix = np.zeros((1, n, n))
    matrix[0, pairs.tracks, pairs.detections] = psi
    expected = exact_marginals(matrix)[0, pairs.tracks, pairs.detections]
    association = jpda_marginals(pairs, n, n, 0.9, 0.99, 1e-3)
    np.testing.assert_allclose(association.pair_weights, expected, atol=1e-6)
    np.testing.assert_allclose(belief_propagation_marginals(pairs.tracks, pairs.detections, psi, n, n), expected,
                               atol=1e-6)


# --- the tracker end to end -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gnn", "jpda"])
def test_clean_crossing_does_not_swap_ids(kind):
    """Two targets on crossing straight lines (2 px/frame each), meeting at frame 20."""
    tracker = create_tracker(TrackerConfig(kind=kind))
    start_a, start_b, velocity_a, velocity_b = np.array([60.0, 60]), np.array([60.0, 140]), np.array([2.0, 2]), \
        np.array([2.0, -2])
    rng = np.random.default_rng(6)
    ids_a, ids_b = set(), set()
    for frame in range(40):
        a, b = start_a + frame * velocity_a, start_b + frame * velocity_b
        tracks = tracker.update(frame, detections_at(np.stack([a, b]) + rng.normal(0, 0.2, (2, 2))))
        if frame >= 3 and abs(frame - 20) > 1:  # beside the meeting point the two must be apart and known
            ids_a.add(confirmed_id_near(tracks, a)), ids_b.add(confirmed_id_near(tracks, b))
    assert len(ids_a) == len(ids_b) == 1 and None not in ids_a | ids_b and ids_a != ids_b


def cluster_points(frame, velocity=(3.0, 1.5)):
    """3 x 3 targets 3 px wide, centres 5 px apart (2 px gaps), moving together."""
    grid = np.stack(np.meshgrid(np.arange(3), np.arange(3)), axis=-1).reshape(-1, 2) * 5.0
    return np.array([100.0, 100.0]) + grid + frame * np.asarray(velocity)


@pytest.mark.parametrize("kind", ["gnn", "jpda"])
def test_cluster_with_two_pixel_gaps_keeps_every_id(kind):
    tracker = create_tracker(TrackerConfig(kind=kind))
    rng = np.random.default_rng(7)
    seen = [set() for _ in range(9)]
    for frame in range(60):
        truth = cluster_points(frame)
        tracks = tracker.update(frame, detections_at(truth + rng.normal(0, 0.3, truth.shape)))
        if frame >= 4:
            for target, point in enumerate(truth):
                seen[target].add(confirmed_id_near(tracks, point, within=1.5))
            assert (tracks.status == TrackStatus.CONFIRMED).sum() == 9
    assert all(len(ids) == 1 and None not in ids for ids in seen)
    assert len(set().union(*seen)) == 9


def test_cluster_keeps_ids_when_one_member_is_missed_for_two_frames():
    tracker = create_tracker(TrackerConfig())
    rng = np.random.default_rng(8)
    ids = {}
    for frame in range(40):
        truth = cluster_points(frame)
        shown = truth if frame not in (20, 21) else np.delete(truth, 4, axis=0)  # the centre target vanishes
        tracks = tracker.update(frame, detections_at(shown + rng.normal(0, 0.3, shown.shape)))
        if frame in (20, 21):
            centre = tracks.select(tracks.status == TrackStatus.LOST)
            assert len(centre) == 1 and np.linalg.norm(centre.states[0, :2] - truth[4]) < 1.5
        if frame >= 5:
            for target, point in enumerate(truth):
                if frame not in (20, 21) or target != 4:
                    ids.setdefault(target, set()).add(confirmed_id_near(tracks, point, within=1.5))
    assert all(len(v) == 1 and None not in v for v in ids.values())


def test_confirmation_needs_m_hits_in_the_first_n_frames():
    tracker = create_tracker(TrackerConfig(confirm_hits=3, confirm_window=5))
    statuses = []
    for frame, seen in enumerate([1, 0, 1, 1, 1]):
        tracks = tracker.update(frame, detections_at([50.0, 50.0]) if seen else Detections.empty())
        statuses.append(int(tracks.status[0]))
    assert statuses == [TrackStatus.TENTATIVE] * 3 + [TrackStatus.CONFIRMED] * 2
    assert tracks.hits[0] == 4 and tracks.ages[0] == 5


def test_tentative_track_is_deleted_once_m_of_n_is_out_of_reach():
    tracker = create_tracker(TrackerConfig(confirm_hits=3, confirm_window=5))
    sizes = [len(tracker.update(frame, detections_at([50.0, 50.0]) if frame == 0 else Detections.empty()))
             for frame in range(5)]
    assert sizes == [1, 1, 1, 0, 0]  # after 3 misses, 1 hit + 1 frame left < 3


def test_coasting_is_reported_lost_then_deleted_and_ids_are_never_reused():
    tracker = create_tracker(TrackerConfig(confirm_hits=2, confirm_window=3, max_misses=3))
    for frame in range(5):
        tracks = tracker.update(frame, detections_at([50.0 + 2 * frame, 50.0]))
    first_id = int(tracks.ids[0])
    assert tracks.status[0] == TrackStatus.CONFIRMED
    for frame in range(5, 8):
        tracks = tracker.update(frame, Detections.empty())
        assert tracks.status.tolist() == [TrackStatus.LOST] and tracks.misses[0] == frame - 4
        assert tracks.states[0, 0] == pytest.approx(50.0 + 2 * frame, abs=0.5)  # coasts along its velocity
        assert len(tracks.reported()) == 1
    assert len(tracker.update(8, Detections.empty())) == 0  # the fourth miss deletes it
    tracks = tracker.update(9, detections_at([50.0 + 2 * 9, 50.0]))
    assert tracks.ids.tolist() == [first_id + 1]


def test_second_detection_sets_velocity_from_the_two_positions():
    tracker = create_tracker(TrackerConfig())
    tracker.update(10, detections_at([100.0, 50.0]))
    tracks = tracker.update(12, detections_at([106.0, 46.0]))  # two frames later
    np.testing.assert_allclose(tracks.states[0], [106, 46, 3, -2])
    assert tracks.hits[0] == 2 and tracks.ages[0] == 2


def test_detector_covariance_is_the_measurement_noise():
    tracker = create_tracker(TrackerConfig())
    covariance = np.array([[[2.0, 0.5], [0.5, 1.0]]], np.float32)
    tracks = tracker.update(0, detections_at([10.0, 10.0], covariances=covariance))
    np.testing.assert_allclose(tracks.covariances[0, :2, :2], covariance[0])


def test_invalid_rows_are_dropped_counted_and_change_nothing_else():
    rng = np.random.default_rng(9)
    clean, dirty = create_tracker(TrackerConfig()), create_tracker(TrackerConfig())
    for frame in range(10):
        points = cluster_points(frame) + rng.normal(0, 0.3, (9, 2))
        good = detections_at(points)
        bad = detections_at(np.r_[points, [[5.0, 5.0], [7.0, 7.0], [9.0, 9.0]]])
        bad.boxes[9, 0], bad.boxes[10, 3], bad.scores[11] = np.nan, np.inf, -np.inf
        expected, got = clean.update(frame, good), dirty.update(frame, bad)
        np.testing.assert_array_equal(got.ids, expected.ids)
        np.testing.assert_array_equal(got.states, expected.states)
    assert dirty.dropped_detections == 30 and clean.dropped_detections == 0
    tracker = create_tracker(TrackerConfig())
    covariances = np.array([np.eye(2), -np.eye(2), [[1.0, 2.0], [2.0, 1.0]], np.full((2, 2), np.nan)])
    tracks = tracker.update(0, detections_at(np.arange(8.0).reshape(4, 2) * 10, covariances=covariances))
    assert len(tracks) == 1 and tracker.dropped_detections == 3


def test_frame_index_that_does_not_increase_is_an_error_naming_the_stream():
    tracker = create_tracker(TrackerConfig(), stream_id="cam-7")
    tracker.update(5, detections_at([1.0, 1.0]))
    for index in (4, 5):
        with pytest.raises(UserError, match=r"stream 'cam-7'.*frame index %d" % index):
            tracker.update(index, Detections.empty())
    assert len(tracker.update(6, Detections.empty())) == 1  # the tracker still works afterwards


def test_empty_frames_before_and_between_detections():
    tracker = create_tracker(TrackerConfig())
    assert len(tracker.update(0, Detections.empty())) == 0
    assert len(tracker.update(1, detections_at([5.0, 5.0]))) == 1
    tracks = tracker.update(2, Detections.empty())
    assert tracks.states.shape == (1, 4) and tracks.misses.tolist() == [1]


def test_detections_breaking_the_contract_raise_a_user_error_naming_the_stream():
    tracker = create_tracker(TrackerConfig(), stream_id="left")
    with pytest.raises(UserError, match=r"stream 'left'.*boxes has shape \(2, 3\)"):
        tracker.update(0, Detections(np.zeros((2, 3), np.float32), np.zeros(2, np.float32)))
    with pytest.raises(UserError, match="covariances has shape"):
        tracker.update(0, Detections(np.zeros((2, 4), np.float32), np.zeros(2, np.float32), None, np.zeros((2, 2))))


def test_constant_acceleration_model_reports_position_and_velocity():
    tracker = create_tracker(TrackerConfig(motion="ca"))
    for frame in range(30):  # x = 0.05 t^2: velocity 0.1 t
        tracks = tracker.update(frame, detections_at([20 + 0.05 * frame ** 2, 40.0]))
    assert tracks.states.shape == (1, 4) and tracks.covariances.shape == (1, 4, 4)
    assert tracks.states[0, 2] == pytest.approx(0.1 * 29, abs=0.15)


def test_tracks_follow_the_output_contract():
    tracker = create_tracker(TrackerConfig())
    for frame in range(4):
        tracks = tracker.update(frame, detections_at(cluster_points(frame), size=4.0))
    n = len(tracks)
    assert n == 9 and tracks.ids.dtype == np.int64 and len(set(tracks.ids.tolist())) == n
    assert tracks.states.dtype == np.float64 and tracks.states.shape == (n, 4)
    assert tracks.boxes.dtype == np.float32 and np.allclose(tracks.boxes[:, 2:] - tracks.boxes[:, :2], 4.0)
    assert tracks.scores.dtype == np.float32 and np.all((tracks.scores >= 0) & (tracks.scores <= 1))
    for name in ("ages", "hits", "misses"):
        assert getattr(tracks, name).dtype == np.int32
    assert tracks.status.dtype == np.uint8 and tracks.covariances.shape == (n, 4, 4)


# --- camera motion --------------------------------------------------------------------------------------

def sky(seed=0, size=(700, 900)):
    """Smooth random clutter, brighter than any edge effect, as a panning sensor sees it."""
    noise = np.random.default_rng(seed).random(size).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 6) * 2000


def test_phase_correlation_recovers_a_known_shift():
    background, motion = sky(), PhaseCorrelationMotion(downscale=2)
    motion.estimate(background[100:356, 100:420])
    shift = motion.estimate(background[97:353, 108:428])  # the view moved right 8 px, up 3: content moves (-8, +3)
    np.testing.assert_allclose(shift, [-8, 3], atol=0.3)


@pytest.mark.parametrize("compensate", [True, False])
def test_camera_motion_compensation_keeps_ids_through_a_pan(compensate):
    """A cluster, still in the world, seen by a sensor that pans 6 px/frame from frame 10: without the estimated
    shift, the predictions land a whole gap off and the ids are lost."""
    background = sky(1)
    tracker = create_tracker(TrackerConfig(camera_motion=compensate))
    view = np.array([50.0, 60.0])
    ids = [set() for _ in range(9)]
    for frame in range(25):
        if frame >= 10:
            view += [6.0, 0.0]
        x0, y0 = view.astype(int)
        image = background[y0:y0 + 256, x0:x0 + 320]
        truth = cluster_points(0) - (view - [50.0, 60.0])
        tracks = tracker.update(frame, detections_at(truth), image)
        if compensate and frame >= 10:
            np.testing.assert_allclose(tracker.camera_shift, [-6, 0], atol=1.0)
        if frame >= 4:
            for target, point in enumerate(truth):
                ids[target].add(confirmed_id_near(tracks, point, within=1.5))
    kept = all(len(v) == 1 and None not in v for v in ids)
    assert kept == compensate


def test_camera_motion_needs_the_image():
    tracker = create_tracker(TrackerConfig(camera_motion=True), stream_id="pan")
    with pytest.raises(UserError, match="stream 'pan'.*camera_motion"):
        tracker.update(0, Detections.empty())


# --- config ---------------------------------------------------------------------------------------------

def test_default_config_builds_a_tracker():
    tracker = create_tracker(build(TrackerConfig, {}, "tracker"), stream_id="s")
    assert isinstance(tracker, PointTargetTracker) and tracker.stream_id == "s"


@pytest.mark.parametrize("key, value", [
    ("process_noise", -0.1), ("measurement_noise_px", -1.0), ("measurement_noise_px", 0.0),
    ("measurement_noise_size_fraction", -0.5), ("initial_velocity_std", float("nan")),
    ("gate_probability", 1.0), ("detection_probability", 0.0), ("clutter_density", 0.0),
    ("confirm_hits", 0), ("confirm_window", 2), ("max_misses", -1), ("camera_motion_downscale", 0),
])
def test_out_of_range_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        build(TrackerConfig, {key: value, "confirm_hits": 3} if key == "confirm_window" else {key: value}, "tracker")
    assert err.value.path == f"tracker.{key}"


def test_unknown_association_kind_lists_the_allowed_values():
    with pytest.raises(ConfigError, match="'gnn', 'jpda'") as err:
        build(TrackerConfig, {"kind": "iou"}, "tracker")
    assert err.value.path == "tracker.kind"
