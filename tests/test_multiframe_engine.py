"""Multi-frame models in the engines (models/export.py): each stream's frames stacked oldest first with the key
frame last, the stream start repeating its first frame, a size change or reconnect starting the stack over,
streams never mixed; ONNX Runtime against the torch model on hand-built stacks, the torch engine against ONNX
Runtime, single-frame models unchanged, and the runner and run_pipeline.py feeding a multi-frame ONNX."""
import json
import subprocess
import sys
from dataclasses import asdict, replace

import cv2
import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch", reason="building and exporting the models needs the train extra (torch)")
pytest.importorskip("onnx", reason="the export needs the onnx package (dev / train extras)")

from engines.config import TensorRTConfig  # noqa: E402
from engines.engine_cache import PlanKey, PlanRecord, read_record, write_record  # noqa: E402
from engines.frames import FULL_SCALE, FrameHistory  # noqa: E402
from engines.preprocess import prepare_numpy  # noqa: E402
from engines.tensorrt_backend import calibration_batches, plan_profile  # noqa: E402
from models.detector import build_detector  # noqa: E402
from models.export import ExportableDetector  # noqa: E402
from pipeline.errors import UserError  # noqa: E402
from pipeline.runner import MultiStreamRunner, Stream  # noqa: E402
from pipeline.sources.reconnect import ReconnectConfig, ReconnectingSource  # noqa: E402
from pipeline.sources.synthetic import SyntheticSource  # noqa: E402
from simulation import SyntheticSceneConfig  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.test_engine_backends import engine, model_config, release, smooth_frames  # noqa: E402
from trackers import create_tracker  # noqa: E402
from training.evaluate import detections_in_original_pixels  # noqa: E402

PREVIOUS = 2  # k: the stacks hold F = 3 frames
THRESHOLD = 0.4  # the seeded model scores a few to a few tens of candidates per frame above it
SIZE = (64, 96)  # multiples of the model's size divisor (16): no padding, so the reference needs none


def multi_frame_config(previous=PREVIOUS, spacing=1):
    return model_config("bpfpn_tiny", **{"input.previous_frames": previous, "input.frame_spacing": spacing})


@pytest.fixture(scope="module")
def multi_release(tmp_path_factory):
    torch.set_num_threads(1)
    return release(tmp_path_factory.mktemp("release") / "bpfpn_tiny_k2", multi_frame_config(), seed=3)


@pytest.fixture(scope="module")
def multi_model(multi_release):
    """The torch model of the release (the same weights as its ONNX), for the reference."""
    detector = build_detector(multi_frame_config())
    detector.load_state_dict(torch.load(multi_release / "model.pt", weights_only=True))
    return detector.eval()


def ort(folder, threshold=THRESHOLD):
    return engine("onnxruntime", folder / "model.onnx", score_threshold=threshold, onnxruntime={"intra_op_threads": 1})


def reference(detector, stack, threshold=THRESHOLD):
    """Detections of one hand-built stack [F, H, W] (oldest first): scaled to [0, 1], normalised by the model,
    the exported module's candidates, then the trainer's host selection (training/evaluate.py) and the
    engine's score threshold."""
    images = torch.from_numpy(stack.astype(np.float32) / FULL_SCALE[stack.dtype])[None]
    with torch.no_grad():
        boxes, scores = ExportableDetector(detector)(detector.normalize(images))
    found = detections_in_original_pixels(boxes[0].numpy().astype(np.float64), scores[0].numpy(), (1.0, 1.0),
                                          stack.shape[1:], nms_iou=0.5, max_detections=100)
    keep = found.scores >= threshold
    found.boxes, found.scores = found.boxes[keep], found.scores[keep]
    return found


def assert_same_detections(expected, found, box_atol=2e-3, score_atol=1e-4):
    """Per frame the same detections, in any order (candidates of near-equal scores may swap places), and some."""
    assert len(expected) == len(found) and sum(len(d) for d in expected) > 0
    for index, (a, b) in enumerate(zip(expected, found)):
        assert len(a) == len(b), (index, a, b)
        unmatched = list(range(len(b)))
        for box, score in zip(a.boxes, a.scores):
            same = [j for j in unmatched if abs(b.scores[j] - score) <= score_atol
                    and np.abs(b.boxes[j] - box).max() <= box_atol]
            assert same, (index, box, score, b)
            unmatched.remove(same[0])


def different(a, b):
    """Two frames' detections differ in number or scores."""
    return len(a) != len(b) or not np.allclose(a.scores, b.scores, atol=1e-3)


def training_stack(frames, key, previous=PREVIOUS, spacing=1):
    """Frames key - k s, .., key - s, key of one clip, missing ones repeating the first: training/sequences.py's
    indices."""
    return np.stack([frames[i] for i in np.maximum(key - spacing * np.arange(previous, -1, -1), 0)])


def clip(count, seed, shape=SIZE, dtype=np.uint8):
    """``count`` different smooth frames [count, H, W] of one stream."""
    return np.stack(smooth_frames([(shape, dtype)] * count, seed=seed))


def interleaved(clips, batches):
    """``feed(run)``: ``batches`` (lists of stream names) of the streams' next frames through ``run(images,
    streams)``; returns each stream's results in order."""
    def feed(run):
        found = {name: [] for name in clips}
        taken = {name: 0 for name in clips}
        for batch in batches:
            images = []
            for name in batch:
                images.append(clips[name][taken[name]])
                taken[name] += 1
            for name, detections in zip(batch, run(images, batch)):
                found[name].append(detections)
        return found
    return feed


# ---------------------------------------------------------------------------------------------------------------
# The stacks themselves

def test_frame_history_repeats_the_first_frame_and_keeps_streams_apart():
    history = FrameHistory(PREVIOUS + 1)
    clips = {"a": clip(5, seed=1), "b": clip(3, seed=2, dtype=np.uint16)}
    batches = [["a", "b", "a"], ["a"], ["b", "a", "b", "a"]]  # two frames of one stream may share a batch
    stacks = interleaved(clips, batches)(history.stacks)
    for name, frames in clips.items():
        assert len(stacks[name]) == len(frames)
        for key, stack in enumerate(stacks[name]):
            assert stack.dtype == frames.dtype and np.array_equal(stack, training_stack(frames, key)), (name, key)
    assert np.array_equal(stacks["a"][0], clips["a"][[0, 0, 0]]), "a stream starts with its first frame, repeated"
    assert np.array_equal(stacks["a"][1], clips["a"][[0, 0, 1]])


def test_frame_history_spaces_the_previous_frames_as_training_does():
    history = FrameHistory(PREVIOUS + 1, spacing=3)
    clips = {"a": clip(9, seed=6), "b": clip(4, seed=7)}
    batches = [["a", "b", "a"], ["a", "a"], ["b", "a", "b", "a", "b"], ["a", "a", "a"]]
    stacks = interleaved(clips, batches)(history.stacks)
    for name, frames in clips.items():
        for key, stack in enumerate(stacks[name]):
            assert np.array_equal(stack, training_stack(frames, key, spacing=3)), (name, key)
    assert np.array_equal(stacks["a"][4], clips["a"][[0, 1, 4]]), "slots before the stream start repeat its first"
    assert np.array_equal(stacks["a"][8], clips["a"][[2, 5, 8]]), "a full history: t - 6, t - 3, t"
    with pytest.raises(ValueError, match="spacing >= 1"):
        FrameHistory(3, spacing=0)


def test_frame_history_starts_over_on_a_new_size_type_or_restart_and_copies_frames():
    history = FrameHistory(3)
    frames = clip(3, seed=3)
    for frame in frames:
        history.stacks([frame], streams=["s"])
    larger = clip(1, seed=4, shape=(80, 96))[0]
    assert np.array_equal(history.stacks([larger], ["s"])[0], np.stack([larger] * 3)), "a size change starts over"
    deeper = clip(2, seed=5, shape=(80, 96), dtype=np.uint16)
    assert np.array_equal(history.stacks([deeper[0]], ["s"])[0], np.stack([deeper[0]] * 3))
    assert np.array_equal(history.stacks([deeper[1]], ["s"])[0], deeper[[0, 0, 1]])
    assert np.array_equal(history.stacks([deeper[0]], ["s"], restarts=[1])[0], np.stack([deeper[0]] * 3)), \
        "a reconnect starts over"

    buffer = frames[0].copy()  # a caller reusing one buffer for every frame
    history = FrameHistory(2)
    history.stacks([buffer])
    buffer[:] = frames[1]
    assert np.array_equal(history.stacks([buffer])[0], np.stack([frames[0], frames[1]]))
    images = list(frames)
    assert all(a is b for a, b in zip(FrameHistory(1).stacks(images), images)), "single frames pass as they are"
    with pytest.raises(ValueError, match="2 images, but 1 stream ids"):
        FrameHistory(2).stacks(frames[:2], streams=["s"])


# ---------------------------------------------------------------------------------------------------------------
# ONNX Runtime against the torch model

def test_onnxruntime_detects_on_each_streams_stack_like_the_torch_model(multi_release, multi_model):
    detector = ort(multi_release)
    assert detector.frames == 3 and detector.spec.frames == 3
    clips = {"a": clip(5, seed=10), "b": clip(4, seed=11, dtype=np.uint16)}
    batches = [["a", "b"], ["a"], ["b", "a", "a"], ["b", "b", "a"]]
    found = interleaved(clips, batches)(lambda images, streams: detector.detect(images, streams=streams))
    for name, frames in clips.items():
        assert len(found[name]) == len(frames)
        expected = [reference(multi_model, training_stack(frames, key)) for key in range(len(frames))]
        assert_same_detections(expected, found[name])
    # The stacks matter: the key frame alone, or the stream's frames in another order, give other detections.
    frames = clips["a"]
    for wrong in (frames[[2, 2, 2]], frames[[2, 1, 0]], frames[[1, 2, 2]]):
        assert different(reference(multi_model, wrong), found["a"][2])


def test_onnxruntime_stream_start_repeats_the_first_frame_and_a_new_size_starts_over(multi_release, multi_model):
    detector = ort(multi_release)
    small, large = clip(2, seed=20), clip(2, seed=21, shape=(96, 128))
    stacks = [small[[0, 0, 0]], small[[0, 0, 1]], large[[0, 0, 0]], large[[0, 0, 1]]]
    found = [detector.detect([frame], streams=["cam"])[0] for frame in (*small, *large)]
    assert_same_detections([reference(multi_model, s) for s in stacks], found)
    # Not what stacking across the size change (the old frames resized) would give.
    resized = cv2.resize(small[1], large.shape[:0:-1], interpolation=cv2.INTER_LINEAR)
    mixed = np.stack([resized, resized, large[0]])
    assert different(reference(multi_model, mixed), found[2])


def test_padding_and_normalisation_are_the_same_for_every_channel(multi_release, multi_model):
    """A frame size that needs padding: every channel is normalised, then padded with 0, like one frame."""
    detector = ort(multi_release)
    frames = clip(3, seed=30, shape=(50, 70), dtype=np.uint16)
    stacks = detector.history.stacks(frames)
    batch, scales = detector.prepare(stacks, padded_batch=3)
    assert batch.shape == (3, 3, 64, 80) and np.array_equal(scales, np.ones((3, 2)))
    for item, key in zip(batch, range(3)):
        expected = multi_model.normalize(torch.from_numpy(training_stack(frames, key).astype(np.float32) / 65535.0))
        np.testing.assert_allclose(item[:, :50, :70], expected.numpy(), atol=1e-6)
        assert not item[:, 50:].any() and not item[:, :, 70:].any()


# ---------------------------------------------------------------------------------------------------------------
# The torch engine, single-frame models, contract errors

def test_torch_engine_agrees_with_onnxruntime_on_a_multi_frame_model(multi_release, tmp_path):
    clips = {"a": clip(4, seed=40), "b": clip(4, seed=41, shape=(80, 112), dtype=np.uint16)}
    batches = [["a", "b"], ["b", "a", "a"], ["b", "a", "b"]]
    feed = interleaved(clips, batches)
    onnx_engine, torch_engine = ort(multi_release), engine("torch", multi_release, score_threshold=THRESHOLD,
                                                           torch={"threads": 1})
    assert torch_engine.frames == 3 and torch_engine.spec == onnx_engine.spec
    expected = feed(lambda images, streams: onnx_engine.detect(images, streams=streams))
    found = feed(lambda images, streams: torch_engine.detect(images, streams=streams))
    for name in clips:
        assert_same_detections(expected[name], found[name], box_atol=5e-3, score_atol=2e-4)

    # Without an ONNX beside it the torch engine reads the frames from the model config.
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("model.pt", "model.yaml"):
        (alone / name).write_bytes((multi_release / name).read_bytes())
    bare = engine("torch", alone, score_threshold=THRESHOLD, torch={"threads": 1})
    assert bare.frames == 3
    found = feed(lambda images, streams: bare.detect(images, streams=streams))
    for name in clips:
        assert_same_detections(expected[name], found[name], box_atol=5e-3, score_atol=2e-4)


def test_spaced_frames_run_alike_in_onnxruntime_torch_and_the_reference(multi_model, tmp_path):
    """input.frame_spacing 2: the export writes it, both engines stack t - 4, t - 2, t, and the weights are
    multi_model's (same seed), so the reference is multi_model on the spaced training stacks."""
    spaced = release(tmp_path / "spaced", multi_frame_config(spacing=2), seed=3)
    onnx_engine = ort(spaced)
    torch_engine = engine("torch", spaced, score_threshold=THRESHOLD, torch={"threads": 1})
    assert onnx_engine.spec.frame_spacing == 2 and torch_engine.spec == onnx_engine.spec
    clips = {"a": clip(7, seed=45), "b": clip(5, seed=46, dtype=np.uint16)}
    feed = interleaved(clips, [["a", "b"], ["a", "a", "b"], ["b", "a"], ["a", "b", "a", "b"], ["a"]])
    found = feed(lambda images, streams: onnx_engine.detect(images, streams=streams))
    for name, frames in clips.items():
        expected = [reference(multi_model, training_stack(frames, key, spacing=2)) for key in range(len(frames))]
        assert_same_detections(expected, found[name])
    assert different(reference(multi_model, training_stack(clips["a"], 6)), found["a"][6]), \
        "consecutive frames would give other detections"
    by_torch = feed(lambda images, streams: torch_engine.detect(images, streams=streams))
    for name in clips:
        assert_same_detections(found[name], by_torch[name], box_atol=5e-3, score_atol=2e-4)


def test_torch_engine_rejects_an_onnx_of_another_frame_count(multi_release, tmp_path):
    mixed = tmp_path / "mixed"
    release(mixed, model_config("bpfpn_tiny"), seed=3)  # single-frame model.onnx ...
    for name in ("model.pt", "model.yaml"):  # ... beside a multi-frame torch model
        (mixed / name).write_bytes((multi_release / name).read_bytes())
    with pytest.raises(UserError, match="takes 1 frames per input, 1 apart, but the torch model beside it takes 3, 1"):
        engine("torch", mixed, torch={"threads": 1})
    spaced = yaml.safe_load((multi_release / "model.yaml").read_text())
    spaced["input"]["frame_spacing"] = 4
    (mixed / "model.onnx").write_bytes((multi_release / "model.onnx").read_bytes())
    (mixed / "model.yaml").write_text(yaml.safe_dump(spaced))
    with pytest.raises(UserError, match="takes 3 frames per input, 1 apart, but the torch model beside it takes 3, 4"):
        engine("torch", mixed, torch={"threads": 1})


def test_single_frame_models_work_as_before(tmp_path):
    torch.set_num_threads(1)
    folder = release(tmp_path / "single", model_config("bpfpn_tiny"), seed=3)
    model = build_detector(model_config("bpfpn_tiny"))
    model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    model.eval()
    threshold = 0.3  # this model's scores are lower
    detector = ort(folder, threshold)
    assert detector.frames == 1 and detector.spec.frames == 1
    frames = [*clip(2, seed=50), *clip(1, seed=51, dtype=np.uint16)]
    plain = detector.detect(frames)
    assert_same_detections([reference(model, f[None], threshold) for f in frames], plain)
    assert_same_detections(plain, detector.detect(frames, streams=["a", "a", "b"]))
    assert_same_detections(plain, engine("torch", folder, score_threshold=threshold,
                                         torch={"threads": 1}).detect(frames), box_atol=5e-3, score_atol=2e-4)


def test_contract_checks_the_frames_metadata(multi_release, tmp_path):
    import onnx

    model = onnx.load(str(multi_release / "model.onnx"))
    for props, message in (({"frames": "2"}, r"input 'images' is tensor\(float\) \[.*3.*\], for 2 frames per input"),
                           ({}, "for 1 frames per input by its metadata 'frames' \\(absent: 1\\)"),
                           ({"frames": "0"}, "metadata 'frames' = '0' is not valid"),
                           ({"frames": "inf"}, "metadata 'frames' = 'inf' is not valid"),
                           ({"frames": "3", "frame_spacing": "0.5"}, "metadata 'frame_spacing' = '0.5' is not valid")):
        metadata = {p.key: p.value for p in model.metadata_props if p.key != "frames"}
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, {**metadata, **props})
        path = tmp_path / "edited.onnx"
        onnx.save(model, str(path))
        with pytest.raises(UserError, match=message):
            engine("onnxruntime", path)


def test_tensorrt_profile_and_calibration_take_the_frames(multi_release, tmp_path):
    """What can be checked without TensorRT: the plan profile fixes dimension 1 to F, INT8 calibration feeds
    stacks, and plan sidecars written before F existed mean F = 1."""
    spec = ort(multi_release).spec
    profile = plan_profile(spec, TensorRTConfig(), batch_size=2)
    assert [shape[1] for shape in (profile.min, profile.opt, profile.max)] == [3, 3, 3]
    frames = clip(8, seed=70, shape=(50, 70))
    batches = list(calibration_batches(list(frames), spec, (4, 3, 32, 48)))
    stacks = [training_stack(frames, key) for key in range(4, 8)]  # the calibration frames as one stream
    expected, _ = prepare_numpy(stacks, replace(spec, batch=4, height=32, width=48), 4)
    assert len(batches) == 2 and batches[0].shape == (4, 3, 32, 48)
    np.testing.assert_array_equal(batches[1], expected)

    plan_key = PlanKey("ab" * 32, "10.13.0", "GPU", "fp16", profile)
    record = write_record(b"plan", PlanRecord(tmp_path / "m.plan", plan_key, spec, None))
    assert read_record(record.plan).spec == spec
    sidecar = json.loads(record.sidecar.read_text())
    sidecar["spec"] = {k: v for k, v in asdict(spec).items() if k != "frames"}
    record.sidecar.write_text(json.dumps(sidecar))
    assert read_record(record.plan).spec.frames == 1


# ---------------------------------------------------------------------------------------------------------------
# Through the runner and the command line

class RecordingSink:
    def __init__(self):
        self.results = []

    def write(self, result):
        self.results.append(result)

    def close(self):
        pass


def scene(seed, frames=6):
    return SyntheticSceneConfig(seed=seed, width=96, height=64, frames=frames, dtype="uint8")


def test_runner_tells_a_multi_frame_engine_each_frames_stream(multi_release):
    sinks = {"s0": RecordingSink(), "s1": RecordingSink()}
    streams = [Stream(SyntheticSource(scene(seed), stream_id=name), create_tracker(stream_id=name), [sinks[name]])
               for seed, name in ((1, "s0"), (2, "s1"))]
    stats = MultiStreamRunner(streams, ort(multi_release), batch_size=3, max_wait_ms=20).run()
    assert not stats.errors and stats.frames == 12
    for name, seed in (("s0", 1), ("s1", 2)):
        results = sinks[name].results
        assert [r.frame.index for r in results] == list(range(6))
        alone = ort(multi_release)  # the stream by itself, frame by frame, through a fresh engine
        expected = [alone.detect([r.frame.image])[0] for r in results]
        assert sum(len(d) for d in expected) > 0
        assert_same_detections(expected, [r.detections for r in results])


class FlakySource:
    """A live stream that fails after ``fail_after`` frames; reopened (``reopen``) it starts on other frames."""

    stream_id, live, fps, num_frames = "cam", True, 30.0, None

    def __init__(self, frames, fail_after=None):
        self.frames, self.fail_after = frames, fail_after

    def __iter__(self):
        for index, frame in enumerate(self.frames):
            if index == self.fail_after:
                raise OSError("the camera went away")
            yield frame

    def ground_truth(self):
        return None

    def close(self):
        pass


def test_runner_starts_a_reconnected_streams_stack_over(multi_release):
    before, after = clip(3, seed=60), clip(3, seed=61)
    reopened = []

    def reopen():  # the camera comes back once, with other frames, then stays away
        if reopened:
            raise OSError("no camera")
        reopened.append(FlakySource(after))
        return reopened[0]

    source = ReconnectingSource(FlakySource([*before, before[0]], fail_after=3), reopen,
                                ReconnectConfig(initial_delay_s=0.01, max_attempts=1))
    sink = RecordingSink()
    stats = MultiStreamRunner([Stream(source, create_tracker(stream_id="cam"), [sink])], ort(multi_release),
                              batch_size=4, max_wait_ms=50, queue_size=16).run()
    assert stats.dropped == 0 and len(stats.errors) == 1, stats.errors  # the stream ends when it stays away
    assert [r.frame.restarts for r in sink.results] == [0, 0, 0, 1, 1, 1]
    fresh = ort(multi_release)
    expected = [fresh.detect([f], streams=["x"])[0] for f in before] + \
               [fresh.detect([f], streams=["y"])[0] for f in after]
    assert_same_detections(expected, [r.detections for r in sink.results])
    joined = ort(multi_release).detect([*before, *after])  # what the stack would be without the restart
    assert any(different(a, b) for a, b in zip(joined[3:], expected[3:]))


def test_run_pipeline_runs_a_multi_frame_onnx(multi_release, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "run_pipeline.py"), "--weights", str(multi_release / "model.onnx"),
         "--out", str(tmp_path), "--set", "source.synthetic.width=128", "--set", "source.synthetic.height=96",
         "--set", "source.synthetic.frames=8", "--set", "outputs.video=false", "--set", "detector.batch_size=2",
         "--set", "detector.onnxruntime.intra_op_threads=1", "--set", f"detector.score_threshold={THRESHOLD}"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == 8 and summary["detector"] == "onnxruntime" and not summary["errors"]
    lines = [json.loads(line) for line in (tmp_path / "detections.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(1, 9))
    assert summary["config"]["detector"]["weights"].endswith("model.onnx")
