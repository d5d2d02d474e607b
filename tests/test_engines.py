"""Detector engines: the classical detector on hand-placed targets, the ONNX Runtime engine on tiny hand-built
graphs compared with numpy, host NMS against a plain loop, and the factory/config."""
import math

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy.special import ndtr

from engines import create_detector
from engines.classical import ClassicalIrstDetector, prominent_peaks
from engines.config import ClassicalConfig, DetectorConfig
from engines.null import NullDetector
from engines.onnxruntime_backend import OnnxRuntimeDetector
from engines.postprocess import nms, select_detections
from pipeline.errors import ConfigError, UserError
from pipeline.schema import build
from pipeline.types import Detections

FULL_SCALE = {np.uint8: 255, np.uint16: 65535}


# ---------------------------------------------------------------------------------------------------------------
# Scenes: smooth clutter, sensor noise and pixel-integrated Gaussian spots (pixel (r, c) covers [c, c+1) x [r, r+1))

def smooth_clutter(shape, rng, level, amplitude, scale_px=25.0):
    """A smooth random background (cloud-like variations over ~scale_px), mean ``level``, std ~``amplitude``."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), scale_px)
    return level + amplitude * field / field.std()


def add_spots(image, centres, sigma, peak):
    """Add Gaussian spots integrated over each pixel, scaled so the brightest pixel of each gains ``peak``."""
    rows, cols = np.arange(image.shape[0]), np.arange(image.shape[1])
    for x, y in centres:
        along_x = ndtr((cols + 1 - x) / sigma) - ndtr((cols - x) / sigma)
        along_y = ndtr((rows + 1 - y) / sigma) - ndtr((rows - y) / sigma)
        spot = np.outer(along_y, along_x)
        image += peak * spot / spot.max()
    return image


def quantise(image, dtype):
    return np.clip(np.rint(image), 0, FULL_SCALE[dtype]).astype(dtype)


def scene(dtype, rng, centres=(), sigma=1.0, snr=25.0, shape=(240, 320)):
    """Clutter + targets + white noise, all in units of the noise: 2 grey levels for uint8, 40 counts for uint16
    (uint8 stays below about 220 of 255 and never saturates)."""
    noise = 2.0 if dtype == np.uint8 else 40.0
    image = smooth_clutter(shape, rng, 50.0 * noise, 10.0 * noise)
    add_spots(image, centres, sigma, snr * noise)
    image += noise * rng.standard_normal(shape)
    return quantise(image, dtype)


def match(truth, found, radius):
    """Pairs (i, j) of truth rows and found rows closer than radius, each used once (greedy by distance)."""
    distance = np.linalg.norm(truth[:, None, :] - found[None, :, :], axis=2)
    pairs = []
    while distance.size and distance.min() < radius:
        i, j = np.unravel_index(np.argmin(distance), distance.shape)
        pairs.append((i, j))
        distance[i, :], distance[:, j] = np.inf, np.inf
    return pairs


def random_centres(rng, count, shape, margin=20, spacing=24):
    """Sub-pixel centres at least ``spacing`` px apart, away from the borders."""
    centres = []
    while len(centres) < count:
        c = rng.uniform([margin, margin], [shape[1] - margin, shape[0] - margin])
        if all(np.hypot(*(c - other)) >= spacing for other in centres):
            centres.append(c)
    return np.array(centres)


# ---------------------------------------------------------------------------------------------------------------
# Classical detector

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("sigma", [0.6, 1.0, 1.4])
def test_classical_finds_spots_with_subpixel_centroids(dtype, sigma):
    rng = np.random.default_rng(int(sigma * 10) + (dtype == np.uint16))
    centres = random_centres(rng, 12, (240, 320))
    image = scene(dtype, rng, centres, sigma=sigma)
    detections = ClassicalIrstDetector().detect([image])[0]
    pairs = match(centres, detections.centers, radius=2.0)
    assert len(pairs) == len(centres) == len(detections), (len(pairs), len(detections))
    errors = [np.hypot(*(centres[i] - detections.centers[j])) for i, j in pairs]
    assert max(errors) < 0.3, errors


def test_classical_boxes_scores_and_covariances_are_consistent():
    rng = np.random.default_rng(3)
    centres = random_centres(rng, 8, (240, 320))
    detections = ClassicalIrstDetector().detect([scene(np.uint16, rng, centres, sigma=1.2)])[0]
    widths = detections.boxes[:, 2:] - detections.boxes[:, :2]
    assert detections.boxes.dtype == np.float32 and detections.boxes.shape == (8, 4)
    assert (widths >= 2).all() and (widths <= 7).all()
    assert ((detections.scores > 0.5) & (detections.scores < 1)).all()
    assert (np.diff(detections.scores) <= 0).all(), "best first"
    eigenvalues = np.linalg.eigvalsh(detections.covariances.astype(np.float64))
    assert (eigenvalues > 0).all() and (eigenvalues < 0.1).all(), "bright spots localise to a fraction of a pixel"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_classical_separates_two_spots_4px_apart(dtype):
    rng = np.random.default_rng(5)
    pairs_found = 0
    for trial in range(5):
        first = rng.uniform(60, 100, size=2)
        angle = rng.uniform(0, np.pi)
        centres = np.array([first, first + 4.0 * np.array([np.cos(angle), np.sin(angle)])])
        detections = ClassicalIrstDetector().detect([scene(dtype, rng, centres, sigma=0.8, shape=(160, 160))])[0]
        assert len(detections) == 2, f"trial {trial}: {len(detections)} detections"
        pairs = match(centres, detections.centers, radius=1.0)
        pairs_found += len(pairs)
    assert pairs_found == 10


def test_classical_splits_a_tight_cluster():
    """Nine spots on a 3.5 px grid (gaps of about 1.5 px between their 2 px cores), as in clustered IRST scenes."""
    rng = np.random.default_rng(11)
    grid = np.stack(np.meshgrid(np.arange(3), np.arange(3)), axis=-1).reshape(-1, 2)
    for trial in range(3):
        centres = rng.uniform(70, 90, size=2) + 3.5 * grid
        image = scene(np.uint16, rng, centres, sigma=0.7, snr=40, shape=(160, 160))
        detections = ClassicalIrstDetector().detect([image])[0]
        pairs = match(centres, detections.centers, radius=0.5)
        assert len(pairs) == len(detections) == 9, (trial, len(pairs), len(detections))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_classical_false_alarms_on_smooth_clutter_and_noise(dtype):
    """No targets: at the default threshold nothing, and even at a low threshold under one false alarm per
    10,000 pixels (pure noise stays below about 7 clutter levels)."""
    rng = np.random.default_rng(17)
    frames = [scene(dtype, rng, shape=(256, 320)) for _ in range(4)]
    assert sum(len(d) for d in ClassicalIrstDetector().detect(frames)) == 0
    low = ClassicalIrstDetector(ClassicalConfig(peak_threshold=7.0, extent_threshold=3.0))
    false_alarms = sum(len(d) for d in low.detect(frames))
    assert false_alarms <= 4 * 256 * 320 / 10_000, false_alarms


def test_classical_removes_thin_lines_but_keeps_a_spot_next_to_one():
    """Power lines and cloud filaments along the four line directions of the top-hat are background."""
    rng = np.random.default_rng(23)
    image = smooth_clutter((200, 200), rng, 3000.0, 300.0)
    lines = np.zeros((200, 200), np.float32)
    for (x1, y1, x2, y2), thickness in [((10, 20, 190, 20), 1), ((20, 10, 20, 190), 2), ((40, 40, 190, 190), 1),
                                        ((60, 190, 190, 60), 2), ((10, 60, 130, 180), 1)]:
        cv2.line(lines, (x1, y1), (x2, y2), 1.0, thickness)
    image += 1500.0 * lines
    spot = np.array([[30.5, 160.5]])  # 10 px from the vertical line
    add_spots(image, spot, 0.8, 1500.0)
    image += 40.0 * rng.standard_normal(image.shape)
    detections = ClassicalIrstDetector().detect([quantise(image, np.uint16)])[0]
    assert len(match(spot, detections.centers, 1.0)) == 1
    assert len(detections) == 1, detections.centers


def test_classical_accepts_views_and_rejects_bad_frames():
    rng = np.random.default_rng(29)
    image = scene(np.uint8, rng, [(40.5, 40.5)], shape=(100, 200))
    view = image[:, ::2]  # not contiguous
    assert len(ClassicalIrstDetector().detect([view])[0]) == 1
    for bad in (np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.float32), np.zeros((0, 5), np.uint8)):
        with pytest.raises(UserError, match="expected a non-empty H x W uint8 or uint16"):
            ClassicalIrstDetector().detect([image, bad])


def test_prominent_peaks_merges_plateaus_and_keeps_separate_peaks():
    snr = np.zeros((9, 12), np.float32)
    snr[4, 2:4] = 30.0  # a plateau: two equal maxima, one target
    snr[4, 8], snr[4, 9], snr[4, 10] = 30.0, 15.0, 25.0  # dip of 10 below the lower peak (40% of it): two targets
    labels = (snr > 0).astype(np.int32)
    labels[:, 6:] *= 2
    x, y = np.array([2, 3, 8, 10]), np.array([4, 4, 4, 4])
    keep = prominent_peaks(snr, x, y, labels, split_min_dip=2.0, split_depth=0.3, reach_px=9)
    assert keep.tolist() == [True, False, True, True]
    keep = prominent_peaks(snr, x, y, labels, split_min_dip=2.0, split_depth=0.5, reach_px=9)
    assert keep.tolist() == [True, False, True, False]


# ---------------------------------------------------------------------------------------------------------------
# Host post-processing

def reference_nms(boxes, scores, threshold):
    """The textbook loop, one pair at a time in plain Python."""
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept, suppressed = [], set()
    for rank, i in enumerate(order):
        if i in suppressed:
            continue
        kept.append(i)
        suppressed.update(j for j in order[rank + 1:] if iou(boxes[i], boxes[j]) > threshold)
    return kept


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.8])
def test_nms_matches_reference_loop(seed, threshold):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 40, size=(200, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 12, size=(200, 2))], axis=1)
    scores = np.round(rng.uniform(0, 1, 200), 2)  # ties included
    assert nms(boxes, scores, threshold).tolist() == reference_nms(boxes.tolist(), scores.tolist(), threshold)


def test_select_detections_thresholds_suppresses_and_caps():
    boxes = np.array([[0, 0, 4, 4], [1, 0, 5, 4], [10, 10, 13, 13], [20, 20, 22, 22], [30, 30, 32, 32]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    detections = select_detections(boxes, scores, score_threshold=0.2, iou_threshold=0.5, max_detections=10)
    np.testing.assert_array_equal(detections.boxes, boxes[[0, 2, 3]].astype(np.float32))
    assert detections.scores.dtype == np.float32
    half = np.array([[50, 50, 54, 54], [50, 50, 54, 52]], float)  # IoU exactly 0.5: not above the threshold
    assert len(select_detections(half, np.array([0.5, 0.4]), 0.2, 0.5, 10)) == 2
    assert len(select_detections(half, np.array([0.5, 0.4]), 0.2, 0.49, 10)) == 1
    capped = select_detections(boxes, scores, score_threshold=0.2, iou_threshold=0.5, max_detections=2)
    np.testing.assert_array_equal(capped.scores, np.float32([0.9, 0.7]))
    assert len(select_detections(boxes[:0], scores[:0], 0.2, 0.5, 10)) == 0


# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime engine on hand-built graphs

TOP_K = 16


def save_model(tmp_path, nodes, inputs, outputs, initializers=(), metadata=None, name="model.onnx"):
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, {k: str(v) for k, v in metadata.items()})
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def constant(name, value, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def peak_picker(tmp_path, batch="N", height="H", width="W", metadata=None, name="peaks.onnx"):
    """A contract model: 3x3 local maxima of the input, top-K by value; each box is the peak pixel grown by one
    pixel on every side (x - 1, y - 1, x + 2, y + 2), its score the normalised pixel value."""
    nodes = [
        helper.make_node("MaxPool", ["images"], ["pooled"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Equal", ["images", "pooled"], ["is_peak"]),
        helper.make_node("Cast", ["is_peak"], ["peak_mask"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["images", "peak_mask"], ["peak_values"]),
        helper.make_node("Reshape", ["peak_values", "flat_shape"], ["flat"]),
        helper.make_node("TopK", ["flat", "k"], ["scores", "index"]),
        helper.make_node("Shape", ["images"], ["shape"]),
        helper.make_node("Gather", ["shape", "three"], ["width"]),
        helper.make_node("Mod", ["index", "width"], ["column"]),
        helper.make_node("Div", ["index", "width"], ["row"]),
        helper.make_node("Cast", ["column"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["row"], ["y"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["x", "one"], ["x1"]),
        helper.make_node("Sub", ["y", "one"], ["y1"]),
        helper.make_node("Add", ["x", "two"], ["x2"]),
        helper.make_node("Add", ["y", "two"], ["y2"]),
        *[helper.make_node("Unsqueeze", [c, "last"], [c + "_"]) for c in ("x1", "y1", "x2", "y2")],
        helper.make_node("Concat", ["x1_", "y1_", "x2_", "y2_"], ["boxes"], axis=2),
    ]
    initializers = [constant("flat_shape", [0, -1]), constant("k", [TOP_K]), constant("three", 3),
                    constant("last", [2]), constant("one", 1.0, np.float32), constant("two", 2.0, np.float32)]
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 1, height, width])]
    outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, TOP_K, 4]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, TOP_K])]
    return save_model(tmp_path, nodes, inputs, outputs, initializers, metadata, name)


def reference_peak_picker(network_input):
    """The peak picker's raw outputs for one [H, W] network input, in numpy."""
    padded = np.pad(network_input, 1, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    values = np.where(network_input == windows.max(axis=(2, 3)), network_input, 0).ravel()
    index = np.argsort(-values, kind="stable")[:TOP_K]
    y, x = np.divmod(index, network_input.shape[1])
    boxes = np.stack([x - 1, y - 1, x + 2, y + 2], axis=1).astype(np.float64)
    return boxes, values[index].astype(np.float64)


def peaks_frame(dtype, shape, peaks):
    """A dark frame with bright pixels of distinct values at (x, y): exact, unique local maxima."""
    frame = np.zeros(shape, dtype)
    for (x, y), value in peaks:
        frame[y, x] = value
    return frame


def detector(path, **options):
    return OnnxRuntimeDetector(path, DetectorConfig(engine="onnxruntime", weights=str(path), **options))


def test_onnx_dynamic_sizes_pad_and_keep_frame_coordinates(tmp_path):
    path = peak_picker(tmp_path)
    frames = [peaks_frame(np.uint8, (50, 70), [((3, 4), 200), ((60, 45), 100), ((30, 20), 40)]),
              peaks_frame(np.uint16, (64, 33), [((32, 63), 60000), ((10, 10), 30000)])]
    engine = detector(path, score_threshold=0.05)
    batch, scales = engine.prepare(frames, padded_batch=2)
    assert batch.shape == (2, 1, 64, 96) and (scales == 1).all()
    results = engine.detect(frames)
    expected = [np.array([[2, 3, 5, 6], [59, 44, 62, 47], [29, 19, 32, 22]], np.float32),
                np.array([[31, 62, 33, 64], [9, 9, 12, 12]], np.float32)]  # clipped at the frame's edge
    for result, boxes, frame in zip(results, expected, frames):
        np.testing.assert_array_equal(result.boxes, boxes)
        brightest = np.sort(frame.ravel())[::-1][:len(boxes)]
        np.testing.assert_allclose(result.scores, brightest / FULL_SCALE[frame.dtype.type], rtol=1e-6)


def test_onnx_fixed_size_resizes_and_scales_boxes_back(tmp_path):
    path = peak_picker(tmp_path, batch=1, height=48, width=64)
    rng = np.random.default_rng(1)
    frame = quantise(add_spots(np.zeros((96, 160)), random_centres(rng, 5, (96, 160), margin=10, spacing=20),
                               1.5, 50000.0), np.uint16)
    result = detector(path, score_threshold=0.1).detect([frame])[0]
    network_input = cv2.resize(frame.astype(np.float32), (64, 48), interpolation=cv2.INTER_LINEAR) / 65535.0
    raw_boxes, raw_scores = reference_peak_picker(network_input)
    boxes = raw_boxes * [160 / 64, 96 / 48, 160 / 64, 96 / 48]
    expected = select_detections(np.clip(boxes, 0, [160, 96, 160, 96]), raw_scores, 0.1, 0.5, 100)
    assert len(expected) == 5
    np.testing.assert_allclose(result.boxes, expected.boxes, atol=1e-4)
    np.testing.assert_allclose(result.scores, expected.scores, rtol=1e-5)


def test_onnx_fixed_batch_runs_in_chunks(tmp_path):
    path = peak_picker(tmp_path, batch=2, height=32, width=32)
    frames = [peaks_frame(np.uint8, (32, 32), [((5 + i, 7), 100 + i)]) for i in range(3)]
    results = detector(path, score_threshold=0.1).detect(frames)
    assert [r.boxes.tolist() for r in results] == [[[4.0 + i, 6.0, 7.0 + i, 9.0]] for i in range(3)]


def test_onnx_normalisation_comes_from_metadata(tmp_path):
    path = peak_picker(tmp_path, metadata={"mean": 0.25, "std": 0.5, "input_scale": 255, "size_divisor": 8})
    frame = peaks_frame(np.uint8, (20, 20), [((10, 10), 200)]) + np.uint8(10)
    engine = detector(path, score_threshold=0.0, max_detections=1)
    batch, _ = engine.prepare([frame], padded_batch=1)
    assert batch.shape == (1, 1, 24, 24)
    np.testing.assert_allclose(batch[0, 0, :20, :20], (frame / 255.0 * 255 - 0.25) / 0.5, rtol=1e-6)
    assert (batch[0, 0, 20:, :] == 0).all() and (batch[0, 0, :, 20:] == 0).all(), "padding is 0 after normalising"
    assert engine.detect([frame])[0].scores[0] == pytest.approx((210 - 0.25) / 0.5, rel=1e-6)


def test_onnx_resize_factor_upscales_frames_and_scales_boxes_back(tmp_path):
    """metadata resize_factor 2: a 30 x 50 frame runs as 60 x 100 (padded to 64 x 128) and boxes come back halved,
    as the peak picker finds them on OpenCV's 2x bilinear resize of the frame."""
    path = peak_picker(tmp_path, metadata={"resize_factor": 2.0})
    rng = np.random.default_rng(3)
    frame = quantise(add_spots(np.zeros((30, 50)), random_centres(rng, 3, (30, 50), margin=6, spacing=12), 1.2,
                               50000.0), np.uint16)
    engine = detector(path, score_threshold=0.1)
    batch, scales = engine.prepare([frame], padded_batch=1)
    assert batch.shape == (1, 1, 64, 128) and engine.spec.resize_factor == 2.0
    np.testing.assert_array_equal(scales, [[0.5, 0.5]])
    network_input = cv2.resize(frame.astype(np.float32), (100, 60), interpolation=cv2.INTER_LINEAR) / 65535.0
    np.testing.assert_allclose(batch[0, 0, :60, :100], network_input, atol=1e-6)
    raw_boxes, raw_scores = reference_peak_picker(network_input)
    expected = select_detections(np.clip(raw_boxes / 2, 0, [50, 30, 50, 30]), raw_scores, 0.1, 0.5, 100)
    result = engine.detect([frame])[0]
    assert len(expected) == 3
    np.testing.assert_allclose(result.boxes, expected.boxes, atol=1e-4)
    np.testing.assert_allclose(result.scores, expected.scores, rtol=1e-5)


def fixed_outputs_model(tmp_path, boxes, scores):
    """A contract model whose outputs ignore the pixels: the given boxes [K, 4] and scores [K] for every image."""
    nodes = [helper.make_node("Shape", ["images"], ["shape"]),
             helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
             helper.make_node("Concat", ["batch", "box_dims"], ["box_shape"], axis=0),
             helper.make_node("Concat", ["batch", "score_dims"], ["score_shape"], axis=0),
             helper.make_node("Expand", ["box_values", "box_shape"], ["boxes"]),
             helper.make_node("Expand", ["score_values", "score_shape"], ["scores"])]
    initializers = [constant("zero", [0]), constant("one", [1]), constant("box_dims", [len(boxes), 4]),
                    constant("score_dims", [len(scores)]),
                    constant("box_values", np.asarray(boxes)[None], np.float32),
                    constant("score_values", np.asarray(scores)[None], np.float32)]
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, "H", "W"])]
    outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", len(boxes), 4]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", len(scores)])]
    return save_model(tmp_path, nodes, inputs, outputs, initializers, name="fixed.onnx")


def test_onnx_runs_host_nms_and_drops_boxes_in_the_padding(tmp_path):
    boxes = [[10, 10, 14, 14], [11, 10, 15, 14], [13, 13, 17, 17], [40, 5, 43, 8], [100, 100, 104, 104]]
    scores = [0.9, 0.8, 0.7, 0.6, 0.95]  # the last box lies in the padding of a 50 x 50 frame
    path = fixed_outputs_model(tmp_path, boxes, scores)
    result = detector(path, score_threshold=0.3, nms_iou=0.5).detect([np.zeros((50, 50), np.uint8)])[0]
    np.testing.assert_array_equal(result.boxes, np.float32([[10, 10, 14, 14], [13, 13, 17, 17], [40, 5, 43, 8]]))
    np.testing.assert_array_equal(result.scores, np.float32([0.9, 0.7, 0.6]))
    assert detector(path).detect([]) == []


def test_onnx_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="detector weights not found: .*missing.onnx"):
        detector(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf")
    with pytest.raises(UserError, match="not an ONNX model ONNX Runtime can load"):
        detector(garbage)

    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, "H", "W"])
    renamed = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])

    def outputs(*specs):
        return [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in specs]

    cases = {
        "not exactly one named 'images'": ([helper.make_node("Identity", ["x"], ["boxes"]),
                                            helper.make_node("Identity", ["x"], ["scores"])], [renamed],
                                           outputs(("boxes", None), ("scores", None))),
        "no output named 'scores'": ([helper.make_node("Identity", ["images"], ["boxes"])], [images],
                                     outputs(("boxes", None))),
        "output 'boxes' has shape": ([helper.make_node("ReduceMax", ["images"], ["boxes"], axes=[1, 2],
                                                       keepdims=0),
                                      helper.make_node("ReduceMax", ["images"], ["scores"], axes=[1, 2],
                                                       keepdims=0)], [images],
                                     outputs(("boxes", None), ("scores", None))),
    }
    for message, (nodes, inputs, outs) in cases.items():
        path = save_model(tmp_path, nodes, inputs, outs, name="bad.onnx")
        with pytest.raises(UserError, match=f"do not follow the engine contract: .*{message}.*expected input 'images'"):
            detector(path)

    for metadata in ({"std": "0"}, {"mean": "abc"}, {"size_divisor": "2.5"}, {"resize_factor": "0"}):
        with pytest.raises(UserError, match=f"metadata '{next(iter(metadata))}'"):
            detector(peak_picker(tmp_path, metadata=metadata, name="meta.onnx"))

    with pytest.raises(UserError, match="expected a non-empty H x W uint8 or uint16"):
        detector(peak_picker(tmp_path)).detect([np.zeros((8, 8), np.int32)])


# ---------------------------------------------------------------------------------------------------------------
# Factory and config

def test_factory_resolves_auto_and_builds_each_backend(tmp_path):
    assert isinstance(create_detector(DetectorConfig()), ClassicalIrstDetector)
    path = peak_picker(tmp_path)
    engine = create_detector(build(DetectorConfig, {"weights": str(path), "onnxruntime": {"intra_op_threads": 1}}))
    assert isinstance(engine, OnnxRuntimeDetector) and engine.name == "onnxruntime"
    null = create_detector(DetectorConfig(engine="null"))
    assert isinstance(null, NullDetector)
    result = null.detect([np.zeros((4, 4), np.uint8)] * 2)
    assert len(result) == 2 and all(isinstance(d, Detections) and len(d) == 0 for d in result)
    classical = create_detector(build(DetectorConfig, {"engine": "classical", "max_detections": 3,
                                                       "classical": {"peak_threshold": 10}}))
    assert classical.config.peak_threshold == 10 and classical.max_detections == 3


@pytest.mark.parametrize("data, key, message", [
    ({"engine": "onnxruntime"}, "detector.weights", "needs a model file"),
    ({"engine": "classical", "weights": "m.onnx"}, "detector.weights", "uses no weights"),
    ({"engine": "tensorrtt"}, "detector.engine", "allowed values"),
    ({"batch_size": 0}, "detector.batch_size", "at least 1"),
    ({"nms_iou": 0}, "detector.nms_iou", "(0, 1]"),
    ({"classical": {"tophat_lengths_px": [4]}}, "detector.classical.tophat_lengths_px", "odd"),
    ({"classical": {"extent_threshold": 30}}, "detector.classical.extent_threshold", "at most peak_threshold"),
    ({"onnxruntime": {"intra_op_threads": -1}}, "detector.onnxruntime.intra_op_threads", ">= 0"),
])
def test_config_rejects_bad_values(data, key, message):
    with pytest.raises(ConfigError, match=f"config key '{key}'.*{message}".replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        build(DetectorConfig, data, "detector")


def test_config_auto_resolution():
    assert DetectorConfig().resolved_engine() == "classical"
    assert DetectorConfig(weights="m.onnx").resolved_engine() == "onnxruntime"
    assert DetectorConfig(engine="null").resolved_engine() == "null"
    assert math.isclose(DetectorConfig().classical.extent_fraction, 0.25)
