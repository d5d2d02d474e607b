"""The INT8 (Q/DQ) copy of a contract ONNX (engines/onnx_int8.py) on the released bafenet_tiny: where the Q/DQ nodes
are, what stays float, the metadata, TensorRT's operator check, ONNX Runtime running it through the engine, its
detections against the fp32 model's on real DenseSIRST frames, and `train.py build-engine --int8-onnx` /
`--precision int8` (TensorRT 10 and 11 paths, with TensorRT itself replaced where it is not installed)."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX graph checks need the onnx package (dev / train extras)")
from onnx import TensorProto, numpy_helper  # noqa: E402

from engines.config import DetectorConfig  # noqa: E402
from engines.engine_cache import PlanKey, PlanRecord, Profile  # noqa: E402
from engines.onnx_graph import SupportedOps, load_onnx, tensorrt_problems  # noqa: E402
from engines.onnx_int8 import write_int8_onnx  # noqa: E402
from engines.onnxruntime_backend import OnnxRuntimeDetector  # noqa: E402
from engines.tensorrt_backend import onnx_precision  # noqa: E402
from simulation import SyntheticScene, SyntheticSceneConfig  # noqa: E402
from tests.conftest import REPO, SHARED_DATA  # noqa: E402

RELEASE = REPO / "weights" / "bafenet_tiny"
FP32 = RELEASE / "model.onnx"
DENSESIRST = SHARED_DATA / "densesirst" / "SIRSTdevkit"
QDQ = ("QuantizeLinear", "DequantizeLinear")


def synthetic_frames(count=8, height=128, width=160):
    scene = SyntheticScene(SyntheticSceneConfig(width=width, height=height, frames=count))
    return [scene.frame(i) for i in range(count)]


@pytest.fixture(scope="module")
def int8_path(tmp_path_factory):
    """bafenet_tiny quantised on synthetic infrared frames at 128 x 160 (quick; accuracy is tested on real frames)."""
    path = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    difference = write_int8_onnx(FP32, path, synthetic_frames(), (128, 160))
    assert 0 <= difference < 0.2, "the copy scores a calibration frame much as the fp32 model does"
    return path


def ort_engine(path, score_threshold=0.05):
    """The ONNX Runtime engine on one thread (the tests share the machine)."""
    config = DetectorConfig(engine="onnxruntime", weights=str(path), score_threshold=score_threshold)
    config.onnxruntime.intra_op_threads = 1
    return OnnxRuntimeDetector(path, config)


def producers(model):
    return {output: node for node in model.graph.node for output in node.output}


def attribute(node, name, default=None):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def test_every_convolution_reads_int8_activations_and_per_channel_int8_weights(int8_path):
    model, original = load_onnx(int8_path), load_onnx(FP32)
    made_by, initializers = producers(model), {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == sum(n.op_type == "Conv" for n in original.graph.node) > 100

    def quantiser_of(name):
        dq = made_by[name]
        assert dq.op_type == "DequantizeLinear", f"{name} is read through a DequantizeLinear"
        q = made_by[dq.input[0]]
        assert q.op_type == "QuantizeLinear" and q.input[1:] == dq.input[1:], "a Q/DQ pair with one scale"
        zero = numpy_helper.to_array(initializers[q.input[2]])
        assert zero.dtype == np.int8 and not zero.any(), "int8, symmetric (zero point 0, as TensorRT needs)"
        return q, numpy_helper.to_array(initializers[q.input[1]])

    for conv in convs:
        _, scale = quantiser_of(conv.input[0])
        assert scale.size == 1 and scale > 0, "activations: one scale per tensor"
        q, scale = quantiser_of(conv.input[1])
        weight = initializers[q.input[0]]
        assert weight.data_type == TensorProto.FLOAT, "weights keep float values behind the Q/DQ pair"
        assert attribute(q, "axis", 1) == 0 and scale.shape == (weight.dims[0],) and (scale > 0).all(), \
            "weights: one scale per output channel"
        if len(conv.input) > 2:
            assert conv.input[2] in initializers and initializers[conv.input[2]].data_type == TensorProto.FLOAT, \
                "biases stay float (TensorRT rejects int32 bias DequantizeLinear)"


def test_the_decoding_after_the_convolutions_stays_float(int8_path):
    model, original = load_onnx(int8_path), load_onnx(FP32)
    made_by = producers(model)
    decode, reads_conv, pending = [], set(), [o.name for o in model.graph.output]
    while pending:  # everything between the graph outputs and the last convolutions
        node = made_by.get(pending.pop())
        if node is None or node in decode:
            continue
        if node.op_type == "Conv":
            reads_conv.add(node.name)
            continue
        decode.append(node)
        pending += list(node.input)
    assert {"TopK", "Sigmoid", "Exp"} <= {n.op_type for n in decode}, "the walk covers the box decoding and top-K"
    assert not [n.name for n in decode if n.op_type in QDQ], "no quantisation after the last convolutions"
    assert len(reads_conv) >= 9, "the decoding reads the float outputs of the head's convolutions directly"
    ends = [[(v.name, v.type.tensor_type.elem_type) for v in [*m.graph.input, *m.graph.output]]
            for m in (model, original)]
    assert ends[0] == ends[1] == [("images", TensorProto.FLOAT), ("boxes", TensorProto.FLOAT),
                                  ("scores", TensorProto.FLOAT)], "the contract's float input and outputs"


def test_metadata_and_tensorrt_check_carry_over(int8_path):
    model, original = load_onnx(int8_path), load_onnx(FP32)
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata == {p.key: p.value for p in original.metadata_props}
    assert {"mean", "std", "input_scale", "size_divisor", "model"} <= set(metadata)
    assert set(QDQ) <= SupportedOps.read().ops, "engines/tensorrt_onnx_ops.txt lists Q/DQ"
    assert tensorrt_problems(model) == []
    assert {o.domain for o in model.opset_import} == {""}, "no opsets of ONNX Runtime's own domains"
    assert onnx_precision(original) == "fp32" and onnx_precision(model) == "int8", \
        "tensorrt_backend builds it as an explicitly quantised (strongly typed) int8 plan"


def test_the_onnxruntime_engine_runs_the_int8_copy(int8_path):
    reference, quantised = ort_engine(FP32), ort_engine(int8_path)
    assert quantised.spec == reference.spec, "the engine reads the same pre-processing from the metadata"
    frames = synthetic_frames(2, 120, 150)
    for found in quantised.detect(frames):
        assert found.boxes.dtype == np.float32 and found.boxes.shape[1:] == (4,) and len(found.scores) == len(found)
    batch, _ = reference.prepare(frames, padded_batch=2)
    ranked = [np.sort(engine._run(batch)[1], axis=1)[:, -50:] for engine in (reference, quantised)]
    assert np.abs(ranked[0] - ranked[1]).max() < 0.1


# ---------------------------------------------------------------------------------------------------------------
# accuracy on real frames

def agreement(reference, found, top=10, min_score=0.15):
    """How the int8 detections follow the fp32 ones: the share of fp32's best detections (``top`` per frame,
    scoring >= ``min_score``) with an int8 detection centred within 1 px, and over those, the median score
    difference and the median centre distance (px)."""
    matched, total, score_gaps, distances = 0, 0, [], []
    for a, b in zip(reference, found):
        best = np.argsort(-a.scores)[:top]
        best = best[a.scores[best] >= min_score]
        centres = (b.boxes[:, :2] + b.boxes[:, 2:]) / 2
        for index in best:
            total += 1
            gaps = np.hypot(*(centres - (a.boxes[index, :2] + a.boxes[index, 2:]) / 2).T)
            if len(gaps) and gaps.min() <= 1.0:
                matched += 1
                score_gaps.append(abs(b.scores[gaps.argmin()] - a.scores[index]))
                distances.append(gaps.min())
    assert total >= 30, "enough confident fp32 detections to compare"
    return matched / total, float(np.median(score_gaps)), float(np.median(distances))


@pytest.fixture(scope="module")
def densesirst():
    if not DENSESIRST.is_dir():
        pytest.skip(f"needs the DenseSIRST data set at {DENSESIRST} (present in CI; absent here)")
    from training.densesirst import DenseSirst
    from training.transforms import resize_keep_ratio

    train, test = (DenseSirst(DENSESIRST, split, with_masks=False) for split in ("train_v2", "test_v2"))
    calibration = [train[i].image for i in range(0, len(train), len(train) // 16)][:16]
    frames = [resize_keep_ratio(test[i], (640, 512)).image for i in range(0, len(test), len(test) // 8)][:8]
    return calibration, frames


def test_int8_detections_follow_fp32_on_densesirst_and_need_real_calibration(densesirst, tmp_path):
    calibration, frames = densesirst

    def detections(path):
        engine = ort_engine(path)
        return [engine.detect([frame])[0] for frame in frames]

    reference = detections(FP32)
    write_int8_onnx(FP32, tmp_path / "real.onnx", calibration, (512, 640))
    matched, score_gap, distance = agreement(reference, detections(tmp_path / "real.onnx"))
    assert matched >= 0.9 and score_gap <= 0.02 and distance <= 0.1, (matched, score_gap, distance)
    # The same check on a copy calibrated on flat grey frames, whose ranges do not fit real scenes, fails.
    flat = [np.full_like(frame, 40) for frame in calibration[:8]]
    write_int8_onnx(FP32, tmp_path / "flat.onnx", flat, (512, 640))
    matched, score_gap, distance = agreement(reference, detections(tmp_path / "flat.onnx"))
    assert matched < 0.9 or score_gap > 0.02 or distance > 0.1, (matched, score_gap, distance)


# ---------------------------------------------------------------------------------------------------------------
# train.py build-engine

@pytest.fixture(scope="module")
def calibration_folder(tmp_path_factory):
    import cv2

    folder = tmp_path_factory.mktemp("calibration")
    for index, frame in enumerate(synthetic_frames(10)):
        cv2.imwrite(str(folder / f"{index:03d}.png"), frame)
    return folder


def build_engine_args(tmp_path, calibration_folder, *extra):
    return ["build-engine", "--onnx", str(RELEASE), "--calibration", str(calibration_folder),
            "--calibration-frames", "8", "--input-size", "128x160", "--cache-dir", str(tmp_path / "cache"), *extra]


def test_build_engine_writes_the_int8_onnx(tmp_path, calibration_folder, capsys):
    from training.cli import main

    out = tmp_path / "model.int8.onnx"
    assert main(build_engine_args(tmp_path, calibration_folder, "--int8-onnx", str(out))) == 0
    assert "differ from the fp32 model's by at most" in capsys.readouterr().err
    assert onnx_precision(load_onnx(out)) == "int8" and tensorrt_problems(load_onnx(out)) == []
    again = build_engine_args(tmp_path, calibration_folder, "--int8-onnx", str(tmp_path / "again.onnx"))
    assert main([again[0], "--onnx", str(out), *again[3:]]) == 2
    error = capsys.readouterr().err
    assert error.count("error: ") == 1 and "already int8" in error


class FakeTensorRT:
    """Stands in for TensorRT ``version`` in build-engine: what ensure_plan is asked to build."""

    def __init__(self, monkeypatch, version):
        import engines.tensorrt_backend as backend

        self.calls = []
        monkeypatch.setattr(backend, "import_tensorrt", lambda: SimpleNamespace(__version__=version))
        monkeypatch.setattr(backend, "open_buffers", lambda: "buffers")
        monkeypatch.setattr(backend, "ensure_plan", self.ensure_plan)

    def ensure_plan(self, onnx, config, buffers, calibration=None, rebuild=False):
        self.calls.append(SimpleNamespace(onnx=Path(onnx), config=config, calibration=calibration))
        profile = Profile((1, 1, 16, 16), (1, 1, 128, 160), (32, 1, 128, 160))
        key = PlanKey("0" * 64, "11.0.0", "a GPU", config.tensorrt.precision, profile)
        return PlanRecord(Path(config.tensorrt.cache_dir) / "model.plan", key, None, str(onnx), {})


def test_int8_on_tensorrt_11_builds_from_a_cached_int8_onnx(tmp_path, calibration_folder, monkeypatch, capsys):
    import training.cli

    tensorrt = FakeTensorRT(monkeypatch, "11.0.0")
    args = build_engine_args(tmp_path, calibration_folder, "--precision", "int8")
    assert training.cli.main(args) == 0
    call = tensorrt.calls[-1]
    assert call.onnx.parent == tmp_path / "cache" and call.onnx.name.startswith("bafenet_tiny-int8-")
    assert onnx_precision(load_onnx(call.onnx)) == "int8" and call.calibration is None
    assert call.config.weights == str(call.onnx) and call.config.tensorrt.precision == "int8"
    assert f"built from the INT8 ONNX {call.onnx}" in capsys.readouterr().err
    written = call.onnx.stat().st_mtime_ns
    monkeypatch.setattr(training.cli, "write_int8", lambda *a: pytest.fail("the cached INT8 ONNX is calibrated again"))
    assert training.cli.main(args) == 0
    assert tensorrt.calls[-1].onnx == call.onnx and call.onnx.stat().st_mtime_ns == written
    assert training.cli.main([*args[:-2], "--precision", "fp16"]) == 0
    assert tensorrt.calls[-1].onnx == FP32, "fp16 on TensorRT 11 converts inside ensure_plan"


def test_int8_on_tensorrt_10_calibrates_the_fp32_onnx(tmp_path, calibration_folder, monkeypatch):
    from training.cli import main

    tensorrt = FakeTensorRT(monkeypatch, "10.13.0")
    assert main(build_engine_args(tmp_path, calibration_folder, "--precision", "int8")) == 0
    call = tensorrt.calls[-1]
    assert call.onnx == FP32 and call.config.tensorrt.calibration == str(calibration_folder)
    assert not (tmp_path / "cache").exists(), "no INT8 ONNX: TensorRT 10's entropy calibrator quantises"
