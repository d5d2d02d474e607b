"""Synthetic scene: determinism, shapes, targets where the ground truth says, cluster geometry, SCR, motion, pan,
and the detector-error model used by tracker benchmarks."""
import dataclasses
import math

import numpy as np
import pytest

from pipeline.errors import ConfigError, UserError
from pipeline.schema import build
from pipeline.types import Detections
from simulation import SyntheticScene, SyntheticSceneConfig, degrade_ground_truth
from simulation.targets import add_point_targets, local_background_std

SMALL = SyntheticSceneConfig(width=256, height=192, frames=60, clusters=2)
NOISE_FREE = dict(temporal_noise_std=0.0, column_noise_std=0.0, pixel_offset_std=0.0, pixel_gain_std=0.0)


@pytest.fixture(scope="module")
def demo():
    return SyntheticScene(SyntheticSceneConfig())


def centres_of(rows):
    return rows[:, 2:4] + 0.5 * rows[:, 4:6]


def rows_of_frame(gt, index):
    return gt[gt[:, 0] == index + 1]


# --- config -------------------------------------------------------------------------------------------------

def test_defaults_are_the_demo_scene(demo):
    config = demo.config
    assert (config.width, config.height, config.frames, config.dtype) == (640, 512, 300, "uint16")
    assert len(demo) == 300
    assert 2 <= config.clusters <= 3 and config.targets_per_cluster == [8, 12]


@pytest.mark.parametrize("data, key", [
    ({"targets_per_cluster": [12, 8]}, "scene.targets_per_cluster"),
    ({"scr_range": [2.0]}, "scene.scr_range"),
    ({"width": 10}, "scene.width"),
    ({"dtype": "uint32"}, "scene.dtype"),
    ({"cloud_cover": 1.5}, "scene.cloud_cover"),
    ({"pan_px_per_frame": [0.0, 5.0]}, "scene.pan_px_per_frame"),  # 1500 px of tilt over 300 frames
    ({"frame": 10}, "scene.frame"),
])
def test_bad_options_name_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        build(SyntheticSceneConfig, data, "scene")
    assert err.value.path == key


def test_random_pan_that_tilts_too_far_is_a_config_error():
    with pytest.raises(ConfigError, match="tilts the camera") as err:
        SyntheticScene(SyntheticSceneConfig(width=64, height=64, frames=300, pan_random_walk_px=5.0))
    assert err.value.path == "pan_random_walk_px"


# --- frames -------------------------------------------------------------------------------------------------

def test_frames_have_the_configured_shape_and_range(demo):
    image = demo.frame(0)
    assert image.shape == (512, 640) and image.dtype == np.uint16
    assert image.max() <= 16383 and image.std() > 100  # 14-bit counts with real clutter in them


def test_same_seed_same_scene_in_any_order():
    first, second = SyntheticScene(SMALL), SyntheticScene(SMALL)
    forward = [first.frame(i) for i in (0, 7, 30)]
    backward = [second.frame(i) for i in (30, 7, 0)][::-1]
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.frame(7), forward[1])  # asking again changes nothing
    np.testing.assert_array_equal(first.ground_truth(), second.ground_truth())
    other = SyntheticScene(dataclasses.replace(SMALL, seed=1))
    assert not np.array_equal(other.frame(0), forward[0])


def test_temporal_noise_changes_every_frame_but_fixed_pattern_does_not():
    config = dataclasses.replace(SMALL, clusters=0, cloud_drift_px_per_frame=[0.0, 0.0])
    frames = np.stack([SyntheticScene(config).frame(i).astype(np.float64) for i in range(40)])
    temporal_std = frames.std(axis=0).mean()
    assert abs(temporal_std - config.temporal_noise_std) < 0.1 * config.temporal_noise_std
    fixed_pattern = frames.mean(axis=0) - SyntheticScene(dataclasses.replace(config, **NOISE_FREE)).frame(0)
    column_offsets = fixed_pattern.mean(axis=0)  # pixel offsets and noise average out along a column
    assert abs(column_offsets.std() - config.column_noise_std) < 0.25 * config.column_noise_std


def test_uint8_output_is_the_same_scene_scaled():
    counts = SyntheticScene(SMALL).frame(5).astype(np.float64)
    grey = SyntheticScene(dataclasses.replace(SMALL, dtype="uint8")).frame(5)
    assert grey.dtype == np.uint8 and grey.shape == counts.shape
    assert np.corrcoef(counts.ravel(), grey.ravel().astype(np.float64))[0, 1] > 0.99
    assert grey.max() - grey.min() > 150  # uses most of the 8-bit range


def test_out_of_range_frame_is_a_user_error():
    scene = SyntheticScene(SMALL)
    with pytest.raises(UserError, match="out of range 0..59"):
        scene.frame(60)
    with pytest.raises(UserError, match="integer"):
        scene.frame(1.5)


# --- ground truth and targets -------------------------------------------------------------------------------

def test_ground_truth_rows(demo):
    gt = demo.ground_truth()
    assert gt.dtype == np.float64 and gt.shape[1] == 6
    assert np.all(np.diff(gt[:, 0] * 1e4 + gt[:, 1]) > 0)  # sorted by frame, then id; one row per target
    assert gt[:, 0].min() == 1 and gt[:, 0].max() == 300
    assert set(np.unique(gt[:, 1]).astype(int)) <= set(range(1, len(demo.target_cluster) + 1))
    sizes = gt[:, 4:6]
    assert np.all(sizes[:, 0] == sizes[:, 1]) and sizes.min() >= 2.0 and sizes.max() <= 3 * 1.5 + 1e-9
    centres = centres_of(gt)
    assert np.all((centres >= 0) & (centres < [640, 512]))
    clusters = np.bincount(demo.target_cluster)
    assert np.all((clusters >= 8) & (clusters <= 12))
    np.testing.assert_allclose(centres_of(rows_of_frame(gt, 42)),
                               demo.target_centres(42)[rows_of_frame(gt, 42)[:, 1].astype(int) - 1])


def isolated_from_other_clusters(scene, centres, ids, distance_px):
    """Mask of targets whose nearest target of another cluster is farther than ``distance_px``."""
    cluster = scene.target_cluster[ids - 1]
    distances = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
    distances[cluster[:, None] == cluster[None]] = np.inf
    return distances.min(axis=1) > distance_px


def test_each_target_is_a_local_maximum_at_its_true_centre():
    scene = SyntheticScene(SyntheticSceneConfig(**NOISE_FREE))
    gt = scene.ground_truth()
    checked = found = 0
    for index in (0, 100, 200, 299):
        image = scene.frame(index).astype(np.float64)
        rows = rows_of_frame(gt, index)
        centres = centres_of(rows)
        keep = isolated_from_other_clusters(scene, centres, rows[:, 1].astype(int), 8.0)
        for x, y in np.floor(centres[keep]).astype(int):
            if not (2 <= x < scene.config.width - 2 and 2 <= y < scene.config.height - 2):
                continue
            near = image[y - 1:y + 2, x - 1:x + 2]
            peak_y, peak_x = np.unravel_index(near.argmax(), near.shape)
            peak_y, peak_x = y - 1 + peak_y, x - 1 + peak_x
            checked += 1
            found += image[peak_y, peak_x] == image[peak_y - 1:peak_y + 2, peak_x - 1:peak_x + 2].max()
    assert checked > 40 and found == checked, (checked, found)


def test_targets_in_a_cluster_are_one_to_two_px_apart(demo):
    rows = rows_of_frame(demo.ground_truth(), 0)
    centres, ids, sizes = centres_of(rows), rows[:, 1].astype(int), rows[:, 4]
    cluster = demo.target_cluster[ids - 1]
    gaps = (np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
            - 0.5 * sizes[:, None] - 0.5 * sizes[None])
    gaps[(cluster[:, None] != cluster[None]) | np.eye(len(ids), dtype=bool)] = np.inf
    nearest = gaps.min(axis=1)
    assert len(nearest) > 20 and np.all((nearest >= 1.0 - 1e-6) & (nearest <= 2.0 + 1e-6))


def test_signal_to_clutter_ratio_is_in_range(demo):
    """SCR measured on the render: target pixels minus the same scene rendered without targets, over the std of
    the target-free frame in the 21x21 window around the target (hand-written here, not the library's helper)."""
    background = SyntheticScene(dataclasses.replace(demo.config, clusters=0))
    gt = demo.ground_truth()
    measured = []
    for index in (0, 150, 299):
        clutter = background.frame(index).astype(np.float64)
        signal = demo.frame(index).astype(np.float64) - clutter
        rows = rows_of_frame(gt, index)
        centres = centres_of(rows)
        keep = isolated_from_other_clusters(demo, centres, rows[:, 1].astype(int), 8.0)
        for x, y in np.floor(centres[keep]).astype(int):
            top, left = min(max(y - 10, 0), 512 - 21), min(max(x - 10, 0), 640 - 21)
            window = clutter[top:top + 21, left:left + 21]
            peak = signal[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].max()
            if clutter[y, x] + peak < 16383:  # saturated targets lose contrast, as on a real sensor
                measured.append(peak / window.std())
    measured = np.array(measured)
    assert len(measured) > 40
    assert measured.min() >= 2.0 * 0.97 and measured.max() <= 10.0 * 1.1  # rounding, tails of cluster neighbours
    assert measured.min() < 3 and measured.max() > 8  # the whole range is used


def test_clusters_move_at_constant_speed_with_gentle_turns_and_cross(demo):
    config = demo.config
    gt = demo.ground_truth()
    positions = np.stack([demo.target_centres(t) for t in range(len(demo))])  # [frames, targets, 2], in view or not
    for k in range(len(demo.target_cluster)):  # no pan: image motion is the cluster's motion
        steps = np.diff(positions[:, k], axis=0)
        speeds = np.hypot(*steps.T)
        assert np.ptp(speeds) < 1e-9 and config.speed_range[0] <= speeds[0] <= config.speed_range[1]
        turns = np.diff(np.unwrap(np.arctan2(steps[:, 1], steps[:, 0])))
        assert np.abs(turns).max() <= math.radians(config.max_turn_deg_per_frame) + 1e-9
    centroids = np.stack([positions[:, demo.target_cluster == c].mean(axis=1) for c in range(config.clusters)])
    closest = min(np.hypot(*(centroids[a] - centroids[b]).T).min()
                  for a in range(config.clusters) for b in range(a))
    assert closest < 1.0
    in_view = [(rows_of_frame(gt, t)).shape[0] for t in range(len(demo))]
    assert np.mean(in_view) > 0.8 * len(demo.target_cluster)  # clusters stay in view most of the time


def test_pan_moves_background_and_targets_together():
    pan = [2.0, -1.0]
    config = dataclasses.replace(SMALL, pan_px_per_frame=pan, cloud_drift_px_per_frame=[0.0, 0.0], **NOISE_FREE)
    panned = SyntheticScene(config)
    np.testing.assert_array_equal(panned.camera_offsets[5], [10.0, -5.0])
    background = SyntheticScene(dataclasses.replace(config, clusters=0))
    first, fifth = background.frame(0), background.frame(5)
    np.testing.assert_array_equal(fifth[5:, :-10], first[:-5, 10:])  # the world moved by -pan * 5 in the image
    image_steps = np.diff(np.stack([panned.target_centres(t) for t in range(len(panned))]), axis=0)
    world_speeds = np.hypot(*(image_steps + pan).transpose(2, 0, 1))  # targets fly at constant speed in the world
    assert np.ptp(world_speeds, axis=0).max() < 1e-9
    assert np.ptp(np.hypot(*image_steps.transpose(2, 0, 1)), axis=0).max() > 0.1  # but not in the image


def test_random_walk_pan_is_smooth_and_reproducible():
    config = dataclasses.replace(SMALL, pan_random_walk_px=0.5)
    path = SyntheticScene(config).camera_offsets
    np.testing.assert_array_equal(path, SyntheticScene(config).camera_offsets)
    speed = np.diff(path, axis=0)
    assert 0.1 < speed.std() < 1.5 and np.abs(np.diff(speed, axis=0)).max() < 0.5
    SyntheticScene(config).frame(len(path) - 1)  # the world is big enough for the whole camera path


def test_point_target_matches_a_supersampled_gaussian():
    image = np.zeros((20, 24))
    centre, sigma, peak = np.array([10.3, 7.8]), 0.8, 100.0
    add_point_targets(image, centre[None], np.array([sigma]), np.array([peak]))
    sub = 40  # sample points per pixel and axis, at sub-pixel centres
    grid = (np.arange(24 * sub) + 0.5) / sub, (np.arange(20 * sub) + 0.5) / sub
    fine = np.exp(-((grid[0][None] - centre[0]) ** 2 + (grid[1][:, None] - centre[1]) ** 2) / (2 * sigma ** 2))
    reference = fine.reshape(20, sub, 24, sub).mean(axis=(1, 3))
    np.testing.assert_allclose(image, peak * reference / reference.max(), atol=0.05)
    pixel_centres = np.indices(image.shape)[::-1] + 0.5
    np.testing.assert_allclose((pixel_centres * image).sum(axis=(1, 2)) / image.sum(), centre, atol=1e-3)


def test_point_target_at_the_border_is_clipped():
    image = np.zeros((10, 10))
    add_point_targets(image, np.array([[-0.5, 4.5], [30.0, 30.0]]), np.array([1.0, 1.0]), np.array([50.0, 50.0]))
    assert 0 < image.max() < 50 and image[:, 3:].max() < 1  # the left tail only; the far target not at all


def test_local_background_std_window():
    image = np.random.default_rng(0).normal(size=(60, 80))
    std = local_background_std(image, np.array([[30.7, 40.2], [1.0, 2.0]]))
    np.testing.assert_allclose(std, [image[30:51, 20:41].std(), image[0:21, 0:21].std()])


# --- detections from ground truth ----------------------------------------------------------------------------

def grid_ground_truth(frames=2000):
    """10 targets 50 px apart in every frame, 3x4 px boxes."""
    centres = np.stack(np.meshgrid(np.arange(5) * 50 + 100.0, np.arange(2) * 50 + 100.0), -1).reshape(-1, 2)
    rows = [[f + 1, k + 1, x - 1.5, y - 2.0, 3.0, 4.0] for f in range(frames) for k, (x, y) in enumerate(centres)]
    return np.array(rows), centres


def test_degraded_detections_have_the_requested_pd_and_position_noise():
    gt, centres = grid_ground_truth()
    detections = degrade_ground_truth(gt, pd=0.9, false_alarms_per_frame=0.0, position_noise_px=0.5, seed=3)
    assert sorted(detections) == list(range(2000))
    found = np.concatenate([d.centers for d in detections.values()])
    assert abs(len(found) / gt.shape[0] - 0.9) < 0.01  # 3 sigma of a binomial over 20000 targets is 0.0064
    errors = found[:, None] - centres[None]
    errors = errors[np.arange(len(found)), np.hypot(*errors.transpose(2, 0, 1)).argmin(axis=1)]
    assert np.allclose(errors.mean(axis=0), 0, atol=0.02) and np.allclose(errors.std(axis=0), 0.5, atol=0.02)
    boxes = np.concatenate([d.boxes for d in detections.values()])
    np.testing.assert_allclose(boxes[:, 2:] - boxes[:, :2], np.broadcast_to([3.0, 4.0], (len(boxes), 2)),
                               atol=1e-4)


def test_false_alarms_are_poisson_and_uniform():
    gt, _ = grid_ground_truth()
    detections = degrade_ground_truth(gt, pd=0.0, false_alarms_per_frame=1.5, width=320, height=240, seed=4)
    counts = np.array([len(d) for d in detections.values()])
    assert abs(counts.mean() - 1.5) < 0.1 and abs(counts.var() - 1.5) < 0.2  # Poisson: variance = mean
    assert any(d.boxes.shape == (0, 4) and d.boxes.dtype == np.float32 for d in detections.values())
    centres = np.concatenate([d.centers for d in detections.values()])
    assert np.all((centres >= 0) & (centres <= [320, 240]))
    np.testing.assert_allclose(centres.mean(axis=0), [160, 120], rtol=0.05)


def test_degraded_detections_are_reproducible_and_cover_trailing_frames():
    gt, _ = grid_ground_truth(frames=5)
    first = degrade_ground_truth(gt, seed=9, frames=8)
    second = degrade_ground_truth(gt, seed=9, frames=8)
    assert sorted(first) == list(range(8))
    for index in range(8):
        np.testing.assert_array_equal(first[index].boxes, second[index].boxes)
    assert isinstance(first[7], Detections)
    none = degrade_ground_truth(gt, pd=0.0, false_alarms_per_frame=0.0)
    assert all(len(d) == 0 for d in none.values())


@pytest.mark.parametrize("kwargs, message", [
    (dict(gt=np.zeros((3, 4))), "shape"),
    (dict(gt=np.array([[0, 1, 0, 0, 2, 2]])), "counted from 1"),
    (dict(gt=np.array([[1, 1, 0, 0, 2, 2]]), pd=1.5), "pd=1.5"),
    (dict(gt=np.array([[3, 1, 0, 0, 2, 2]]), frames=2), "up to frame 3"),
])
def test_degrade_ground_truth_rejects_bad_input(kwargs, message):
    with pytest.raises(UserError, match=message):
        degrade_ground_truth(**kwargs)
