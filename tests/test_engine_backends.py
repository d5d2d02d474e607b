"""Model engines beyond ONNX Runtime: the torch backend against ONNX Runtime on the same exported model, device
pre-processing against the host one, the ONNX graph checks (TensorRT operators, MACs, FP16 copy), the TensorRT
plan cache, build decisions and profiles, 'auto', and `train.py build-engine`. What needs TensorRT or a GPU skips
with the reason where they are absent."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch", reason="the torch engine and the exports need the train extra (torch)")
onnx = pytest.importorskip("onnx", reason="the ONNX graph checks need the onnx package (dev / train extras)")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from engines import create_detector  # noqa: E402
from engines.config import DetectorConfig  # noqa: E402
from engines.engine_cache import PlanCache, PlanKey, PlanRecord, Profile, mismatch, read_record, write_record  # noqa
from engines.model_files import ModelFiles  # noqa: E402
from engines.onnx_fp16 import convert_to_fp16, write_fp16_onnx  # noqa: E402
from engines.onnx_graph import SupportedOps, count_macs, load_onnx, tensorrt_problems  # noqa: E402
from engines.onnxruntime_backend import OnnxRuntimeDetector  # noqa: E402
from engines.preprocess import InputSpec, prepare_numpy, prepare_torch  # noqa: E402
from engines.tensorrt_backend import build_recipe, calibration_batches, onnx_precision, plan_profile  # noqa: E402
from engines.torch_backend import TorchDetector  # noqa: E402
from models.detector import build_detector  # noqa: E402
from models.export import export_onnx  # noqa: E402
from pipeline.errors import ConfigError, UserError  # noqa: E402
from pipeline.schema import build  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from training.export import nearest_box_distance  # noqa: E402

CUDA = torch.cuda.is_available()


def model_config(name="bafenet_lite", **changes):
    config = yaml.safe_load((REPO / "configs" / "models" / f"{name}.yaml").read_text())
    for key, value in changes.items():
        section, field = key.split(".")
        config[section][field] = value
    return config


def seeded_detector(config, seed=0):
    """An untrained detector whose scores are spread out: He-initialised convolutions, unit BatchNorm weights (the
    lite config starts residual branches at 0) and a head with logits near 0, so that scores are distinct and
    rankings do not hinge on ties."""
    torch.manual_seed(seed)
    detector = build_detector(config).eval()
    with torch.no_grad():
        for module in detector.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1.0)
        for conv in (detector.head.conv_cls, detector.head.conv_centerness, detector.head.conv_reg):
            conv.weight.normal_(0, 0.05)
            conv.bias.zero_()
    return detector


def release(folder: Path, config, input_size=None, seed=0) -> Path:
    """A released model folder (engines/model_files.py): model.onnx, model.pt, model.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    detector = seeded_detector(config, seed)
    export_onnx(detector, folder / "model.onnx", input_size=input_size)
    torch.save(detector.state_dict(), folder / "model.pt")
    (folder / "model.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def lite_release(tmp_path_factory):
    torch.set_num_threads(1)
    return release(tmp_path_factory.mktemp("release") / "bafenet_lite", model_config())


def smooth_frames(shapes_and_dtypes, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for shape, dtype in shapes_and_dtypes:
        full = np.iinfo(dtype).max
        noise = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 2.0)
        frames.append(np.clip((noise - noise.min()) / np.ptp(noise) * full, 0, full).astype(dtype))
    return frames


def engine(kind, weights, **options):
    return create_detector(build(DetectorConfig, {"engine": kind, "weights": str(weights), **options}, "detector"))


def assert_same_detections(expected, found, box_atol=2e-3, score_atol=1e-4):
    """Same detections per frame, independently of their order: near-tied scores may swap places between runtimes."""
    assert len(expected) == len(found)
    for a, b in zip(expected, found):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(np.sort(b.scores), np.sort(a.scores), atol=score_atol)
        assert nearest_box_distance(a.boxes, b.boxes) <= box_atol and nearest_box_distance(b.boxes, a.boxes) <= box_atol


# ---------------------------------------------------------------------------------------------------------------
# torch engine vs ONNX Runtime on the same released model

def test_torch_matches_onnxruntime_on_a_released_model(lite_release):
    frames = smooth_frames([((120, 160), np.uint16), ((100, 150), np.uint8), ((120, 160), np.uint16)])
    reference = engine("onnxruntime", lite_release, score_threshold=0.3)
    torch_engine = engine("torch", lite_release, score_threshold=0.3, torch={"threads": 1})
    assert isinstance(torch_engine, TorchDetector) and torch_engine.device.type == "cpu"
    assert torch_engine.spec == reference.spec
    batch, _ = reference.prepare(frames, padded_batch=3)
    _, onnx_scores = reference._run(batch)
    _, torch_scores, _ = torch_engine.infer(frames, 3)
    ranked = (np.sort(s, axis=1)[:, ::-1][:, :200] for s in (onnx_scores, torch_scores))
    np.testing.assert_allclose(*ranked, atol=2e-5)
    assert (onnx_scores > 0.3).sum() > 50, "the seeded model scores many candidates"
    assert_same_detections(reference.detect(frames), torch_engine.detect(frames))


SHIPPED_RELEASES = sorted(path.parent for path in (REPO / "weights").glob("*/model.onnx"))


@pytest.mark.parametrize("folder", SHIPPED_RELEASES, ids=lambda folder: folder.name)
def test_every_shipped_release_agrees_across_engines_and_suits_tensorrt(folder):
    """The files in weights/ themselves: torch (model.pt + model.yaml) and ONNX Runtime (model.onnx) find the same
    detections on a real-sized frame, and TensorRT's parser would take every operator of the ONNX."""
    torch.set_num_threads(1)
    frames = smooth_frames([((512, 640), np.uint8), ((256, 320), np.uint16)], seed=4)
    reference = engine("onnxruntime", folder, score_threshold=0.02)
    torch_engine = engine("torch", folder, score_threshold=0.02, torch={"threads": 1})
    assert_same_detections(reference.detect(frames), torch_engine.detect(frames), box_atol=5e-3, score_atol=1e-4)
    assert tensorrt_problems(load_onnx(folder / "model.onnx")) == []


def test_a_resize_factor_model_sees_frames_as_its_factor_1_twin_sees_them_upscaled(tmp_path):
    """input.resize_factor 2 travels from the model config into the ONNX metadata and the torch engine alike: both
    find on a frame what the same weights without the factor find on OpenCV's 2x resize of it, boxes halved."""
    torch.set_num_threads(1)
    upscaled = release(tmp_path / "x2", model_config(**{"input.resize_factor": 2.0}))
    plain = release(tmp_path / "x1", model_config())
    frame = smooth_frames([((60, 80), np.uint16)], seed=2)[0]  # 16 bits: OpenCV's rounding of the resize is ~1e-5
    twice = cv2.resize(frame, (160, 120), interpolation=cv2.INTER_LINEAR)
    expected = engine("onnxruntime", plain, score_threshold=0.3).detect([twice])[0]
    expected = type(expected)(expected.boxes / 2, expected.scores)
    assert len(expected) > 20
    for kind, options in (("onnxruntime", {}), ("torch", {"torch": {"threads": 1}})):
        found = engine(kind, upscaled, score_threshold=0.3, **options)
        assert found.spec.resize_factor == 2.0
        assert_same_detections([expected], found.detect([frame]), box_atol=5e-3)


def test_torch_matches_onnxruntime_with_a_fixed_input_size(tmp_path):
    """A fixed-size ONNX: frames are resized (on the device for torch, by OpenCV for ONNX Runtime)."""
    folder = release(tmp_path / "fixed", model_config(), input_size=(64, 96), seed=1)
    frames = smooth_frames([((100, 150), np.uint8), ((80, 120), np.uint16)], seed=2)
    reference = engine("onnxruntime", folder, score_threshold=0.3)
    torch_engine = engine("torch", folder / "model.pt", score_threshold=0.3)
    assert torch_engine.spec.height == 64 and torch_engine.spec.width == 96
    assert_same_detections(reference.detect(frames), torch_engine.detect(frames), box_atol=5e-3, score_atol=2e-4)


def test_torch_runs_a_training_checkpoint_without_yaml(lite_release, tmp_path):
    from training.checkpoint import save_checkpoint

    state = torch.load(lite_release / "model.pt", weights_only=True)
    checkpoint = save_checkpoint(tmp_path / "best.pt", {"model": state, "model_config": model_config()})
    frames = smooth_frames([((96, 128), np.uint8)], seed=3)
    from_checkpoint = engine("torch", checkpoint, score_threshold=0.3)
    assert from_checkpoint.spec.height is None, "no ONNX beside it: dynamic input"
    assert_same_detections(engine("torch", lite_release, score_threshold=0.3).detect(frames),
                           from_checkpoint.detect(frames))


def test_torch_errors_name_the_missing_part(lite_release, tmp_path):
    only_onnx = tmp_path / "only_onnx"
    only_onnx.mkdir()
    (only_onnx / "model.onnx").write_bytes((lite_release / "model.onnx").read_bytes())
    with pytest.raises(UserError, match="needs the torch state dict"):
        TorchDetector(only_onnx)
    no_yaml = tmp_path / "weights.pt"
    no_yaml.write_bytes((lite_release / "model.pt").read_bytes())
    with pytest.raises(UserError, match="needs the model config"):
        TorchDetector(no_yaml)
    other = tmp_path / "other"
    release(other, model_config("bafenet_lite", **{"neck.out_channels": 32, "head.feat_channels": 32}))
    (other / "model.pt").write_bytes((lite_release / "model.pt").read_bytes())
    with pytest.raises(UserError, match="does not fit the model"):
        TorchDetector(other)
    if not CUDA:
        with pytest.raises(UserError, match="no CUDA GPU"):
            engine("torch", lite_release, torch={"device": "cuda"})
    with pytest.raises(ConfigError, match="detector.torch.precision.*needs device 'cuda'"):
        build(DetectorConfig, {"engine": "torch", "weights": "m.pt", "torch": {"device": "cpu", "precision": "fp16"}},
              "detector")


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (fp16, channels-last and CUDA graphs run on CUDA only)")
def test_torch_cuda_fp16_graphs_match_onnxruntime(lite_release):
    frames = smooth_frames([((512, 640), np.uint16)] * 4, seed=4)
    reference = engine("onnxruntime", lite_release, score_threshold=0.3).detect(frames)
    fast = engine("torch", lite_release, score_threshold=0.3)
    assert fast.dtype == torch.float16 and fast.use_graphs and fast.channels_last
    for _ in range(2):  # capture, then replay
        found = fast.detect(frames)
    assert len(fast._graphs) == 1
    for a, b in zip(reference, found):
        matched = sum(np.abs(b.boxes - box).max(axis=1).min() < 0.5 for box in a.boxes[:20])
        assert matched >= 18, "fp16 keeps the best detections to half a pixel"


def test_prepare_torch_matches_prepare_numpy():
    frames = smooth_frames([((50, 70), np.uint8), ((64, 33), np.uint16), ((50, 70), np.uint8)], seed=5)
    for spec in (InputSpec(None, None, None, 0.4, 0.2, 1.0, 16), InputSpec(4, 40, 48, 100.0, 2.0, 255.0, 32),
                 InputSpec(None, None, None, 0.4, 0.2, 1.0, 16, resize_factor=2.0)):
        host, host_scales = prepare_numpy(frames, spec, padded_batch=4)
        device, device_scales = prepare_torch(frames, spec, 4, torch.device("cpu"), torch.float32)
        resized = spec.height or spec.resize_factor != 1
        np.testing.assert_allclose(device.numpy(), host, rtol=1e-5, atol=2e-4 if resized else 1e-6)
        np.testing.assert_array_equal(device_scales, host_scales)
        assert (host[3] == 0).all()


# ---------------------------------------------------------------------------------------------------------------
# 'auto' and the factory

@pytest.mark.parametrize("tensorrt, cuda, files, expected", [
    (False, False, ("model.onnx", "model.pt", "model.yaml"), "onnxruntime"),
    (True, False, ("model.onnx", "model.pt", "model.yaml"), "onnxruntime"),
    (False, True, ("model.onnx", "model.pt", "model.yaml"), "torch"),
    (True, True, ("model.onnx", "model.pt", "model.yaml"), "tensorrt"),
    (False, True, ("model.onnx",), "onnxruntime"),
    (False, False, ("model.pt", "model.yaml"), "torch"),
    (True, True, ("model.pt", "model.yaml"), "torch"),
])
def test_auto_picks_the_fastest_engine_available(tmp_path, monkeypatch, tensorrt, cuda, files, expected):
    import engines.availability

    monkeypatch.setattr(engines.availability, "tensorrt_installed", lambda: tensorrt)
    monkeypatch.setattr(engines.availability, "cuda_available", lambda: cuda)
    for name in files:
        (tmp_path / name).write_text("")
    assert DetectorConfig(weights=str(tmp_path)).resolved_engine() == expected
    assert DetectorConfig().resolved_engine() == "classical"


def test_model_files_find_released_folders_and_siblings(tmp_path):
    for name in ("model.onnx", "model.pt", "model.yaml", "x.onnx", "x.yaml", "y.plan"):
        (tmp_path / name).write_text("")
    folder = ModelFiles.find(tmp_path)
    assert (folder.onnx, folder.state_dict, folder.model_config) == (tmp_path / "model.onnx", tmp_path / "model.pt",
                                                                     tmp_path / "model.yaml")
    loose = ModelFiles.find(tmp_path / "x.onnx")
    assert loose.onnx == tmp_path / "x.onnx" and loose.model_config == tmp_path / "x.yaml" and loose.state_dict is None
    assert ModelFiles.find(tmp_path / "y.plan").plan == tmp_path / "y.plan"
    assert ModelFiles.find(tmp_path / "missing.onnx").onnx == tmp_path / "missing.onnx"


def test_factory_and_config_for_the_new_engines(lite_release):
    assert isinstance(engine("torch", lite_release), TorchDetector)
    assert isinstance(engine("onnxruntime", lite_release), OnnxRuntimeDetector), "a released folder works too"
    config = build(DetectorConfig, {"engine": "tensorrt", "weights": "m.onnx",
                                    "tensorrt": {"precision": "int8", "input_size": [512, 640]}}, "detector")
    assert config.tensorrt.precision == "int8" and config.resolved_engine() == "tensorrt"
    for data, key, message in [
        ({"tensorrt": {"precision": "fp8"}}, "detector.tensorrt.precision", "allowed values"),
        ({"tensorrt": {"max_batch": 0}}, "detector.tensorrt.max_batch", "1..1024"),
        ({"tensorrt": {"input_size": [512]}}, "detector.tensorrt.input_size", "height, width"),
        ({"engine": "torch"}, "detector.weights", "needs a model file"),
        ({"torch": {"threads": -1}}, "detector.torch.threads", ">= 0"),
    ]:
        with pytest.raises(ConfigError, match=f"'{key}'.*{message}".replace("[", r"\[").replace("]", r"\]")):
            build(DetectorConfig, data, "detector")


def tensorrt_and_gpu() -> bool:
    from engines.availability import cuda_available, tensorrt_installed

    return tensorrt_installed() and cuda_available()


@pytest.mark.skipif(tensorrt_and_gpu(), reason="checks the message shown where TensorRT or a GPU is missing")
def test_tensorrt_engine_without_tensorrt_or_gpu_says_what_is_missing(lite_release):
    with pytest.raises(UserError, match="tensorrt.*pip install -e '.\\[tensorrt\\]'|needs an NVIDIA GPU"):
        engine("tensorrt", lite_release, tensorrt={"input_size": [128, 160]})


# ---------------------------------------------------------------------------------------------------------------
# ONNX graph checks

@pytest.mark.parametrize("name", ["bafenet_lite", "bafenet_r18_paper"])
def test_every_operator_of_the_exported_models_is_supported_by_tensorrt(tmp_path, name):
    path = export_onnx(build_detector(model_config(name)).eval(), tmp_path / f"{name}.onnx")
    model = load_onnx(path)
    assert tensorrt_problems(model) == []
    supported = SupportedOps.read()
    assert {n.op_type for n in model.graph.node} <= supported.ops
    assert (supported.min_opset, supported.max_opset) == (9, 24) and len(supported.ops) > 150


def test_tensorrt_check_reports_unsupported_graphs(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("u", "v", "w")]
    nodes = [helper.make_node("Unique", ["x"], ["u"]), helper.make_node("Unique", ["x"], ["u2"]),
             helper.make_node("MyOp", ["x"], ["v"], domain="com.example"),
             helper.make_node("TopK", ["x", "k"], ["w", "i"])]
    graph = helper.make_graph(nodes, "bad", [x], outputs, [numpy_helper.from_array(np.array([5000]), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25), helper.make_opsetid("com.example", 1)])
    problems = tensorrt_problems(model)
    assert problems[0] == "opset 25 is outside TensorRT's 9..24"
    assert "operator Unique (2 nodes) is not in TensorRT's supported ONNX operators" in problems
    assert any("com.example::MyOp" in p and "plugin" in p for p in problems)
    assert any("K = 5000 is not below 3840" in p for p in problems)


def torch_macs(detector, height, width):
    """Multiply-accumulates of every Conv2d / Linear in one forward pass, counted by hooks (an independent count)."""
    total = [0]

    def conv(module, _, output):
        total[0] += output.numel() * module.in_channels // module.groups * int(np.prod(module.kernel_size))

    def linear(module, _, output):
        total[0] += output.numel() * module.in_features

    handles = [m.register_forward_hook(conv if isinstance(m, torch.nn.Conv2d) else linear)
               for m in detector.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        detector(torch.zeros(1, 1, height, width))
    for handle in handles:
        handle.remove()
    return total[0]


def test_macs_from_the_onnx_graph_match_a_torch_count(tmp_path):
    """FCOS head (no segmentation branch, which the export prunes): every Conv of the module is in the graph."""
    detector = build_detector(model_config(**{"head.kind": "fcos"})).eval()
    path = export_onnx(detector, tmp_path / "fcos.onnx")
    macs = count_macs(path, 96, 160)
    assert macs["total"] == torch_macs(detector, 96, 160) > 0
    assert count_macs(path, 192, 320)["total"] == 4 * macs["total"]


def test_macs_of_hand_built_products(tmp_path):
    shapes = {"x": [1, 3, 16, 20]}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),  # [1, 8, 8, 10]
             helper.make_node("ConvTranspose", ["c", "wt"], ["t"], strides=[2, 2]),  # [1, 4, 16, 20]
             helper.make_node("Reshape", ["t", "flat"], ["r"]),  # [64, 320]
             helper.make_node("MatMul", ["r", "m"], ["p"]),  # [64, 5]
             helper.make_node("Gemm", ["p", "g"], ["y"], transB=1)]  # [64, 7]
    initializers = [numpy_helper.from_array(np.zeros(s, np.float32), n) for n, s in
                    (("w", [8, 3, 3, 3]), ("wt", [8, 4, 2, 2]), ("m", [320, 5]), ("g", [7, 5]))]
    initializers.append(numpy_helper.from_array(np.array([64, 320]), "flat"))
    images = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph(nodes, "macs", [images], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializers)
    path = tmp_path / "macs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    macs = count_macs(path, *shapes["x"][2:])
    assert macs == {"Conv": 8 * 8 * 10 * 27, "ConvTranspose": 8 * 8 * 10 * 16, "MatMul": 64 * 5 * 320,
                    "Gemm": 64 * 7 * 5, "total": 640 * 27 + 640 * 16 + 64 * 5 * 320 + 64 * 7 * 5}


def test_fp16_copy_keeps_the_contract_and_the_results(lite_release, tmp_path):
    model = load_onnx(lite_release / "model.onnx")
    half = convert_to_fp16(model)
    types = {t.name: t.data_type for t in half.graph.initializer}  # and every other tensor's, inferred:
    types.update({v.name: v.type.tensor_type.elem_type for v in half.graph.value_info})
    conv_weights = [n.input[1] for n in half.graph.node if n.op_type == "Conv"]
    assert conv_weights and all(types[w] == TensorProto.FLOAT16 for w in conv_weights)
    assert [i.type.tensor_type.elem_type for i in [*half.graph.input, *half.graph.output]] == [TensorProto.FLOAT] * 3
    assert onnx_precision(model) == "fp32" and onnx_precision(half) == "fp16" and tensorrt_problems(half) == []
    path = tmp_path / "half.onnx"
    onnx.save(half, str(path))
    frames = smooth_frames([((128, 160), np.uint16)], seed=6)
    full, reduced = (OnnxRuntimeDetector(p, DetectorConfig(engine="onnxruntime", weights=str(p),
                                                           score_threshold=0.5)).detect(frames)[0]
                     for p in (lite_release / "model.onnx", path))
    assert len(full) > 5
    matched = [np.abs(reduced.boxes - box).max(axis=1).min() for box in full.boxes]
    assert np.median(matched) < 0.05 and np.abs(np.sort(full.scores)[-5:] - np.sort(reduced.scores)[-5:]).max() < 5e-3
    assert write_fp16_onnx(lite_release / "model.onnx", tmp_path / "written.onnx") < 5e-3


# ---------------------------------------------------------------------------------------------------------------
# TensorRT plan cache, build decisions and profiles (no TensorRT needed)

PROFILE = Profile((1, 1, 32, 32), (4, 1, 512, 640), (32, 1, 512, 640))
SPEC = InputSpec(None, None, None, 0.399, 0.227, 1.0, 16)


def key(**changes):
    fields = {"onnx_sha256": "ab" * 32, "tensorrt": "10.13.0", "gpu": "NVIDIA H200 (sm_90)", "precision": "fp16",
              "profile": PROFILE, **changes}
    return PlanKey(**fields)


def cached_plan(cache, plan_key, payload=b"plan"):
    return write_record(payload, PlanRecord(cache.path_for(plan_key, "lite"), plan_key, SPEC, "/models/lite.onnx"))


def test_plan_key_covers_everything_a_plan_depends_on():
    digests = {key().digest()}
    for change in ({"onnx_sha256": "cd" * 32}, {"tensorrt": "10.14.1"}, {"gpu": "NVIDIA A100 (sm_80)"},
                   {"precision": "int8"}, {"profile": Profile((1, 1, 32, 32), (1, 1, 512, 640), (32, 1, 512, 640))}):
        digests.add(key(**change).digest())
    assert len(digests) == 6 and key().digest() == key().digest()
    assert PlanKey.from_json(json.loads(json.dumps(key().to_json()))) == key()
    assert PROFILE.contains((8, 1, 480, 640)) and not PROFILE.contains((8, 1, 544, 640))


def test_plan_cache_hits_and_names_plans_built_for_another_gpu_or_version(tmp_path):
    cache = PlanCache(tmp_path / "cache")
    assert cache.lookup(key()).hit is None
    old_gpu = cached_plan(cache, key(gpu="NVIDIA A100 (sm_80)", tensorrt="10.3.0"))
    cached_plan(cache, key(precision="fp32"))  # another precision: neither a hit nor stale
    found = cache.lookup(key())
    assert found.hit is None and len(found.stale) == 1
    record, reason = found.stale[0]
    assert record.plan == old_gpu.plan
    assert reason == ("built for GPU 'NVIDIA A100 (sm_80)' (this machine: 'NVIDIA H200 (sm_90)') and TensorRT "
                      "'10.3.0' (this machine: '10.13.0')")
    fresh = cached_plan(cache, key(), b"new plan")
    found = cache.lookup(key())
    assert found.hit.plan == fresh.plan and found.hit.spec == SPEC and found.hit.plan.read_bytes() == b"new plan"
    assert mismatch(key(), key()) is None


def test_plan_cache_ignores_incomplete_or_foreign_files(tmp_path):
    cache = PlanCache(tmp_path)
    record = cached_plan(cache, key())
    record.sidecar.write_text("{not json")
    assert cache.lookup(key()).hit is None and read_record(record.plan) is None
    record = cached_plan(cache, key())
    record.sidecar.unlink()  # a plan whose sidecar was never written (interrupted build)
    assert cache.lookup(key()).hit is None
    record = cached_plan(cache, key())
    PlanCache.remove(record)
    assert not record.plan.exists() and not record.sidecar.exists()


@pytest.mark.parametrize("precision, major, kind, expected", [
    ("fp32", 10, "fp32", dict(strongly_typed=False)),
    ("fp16", 10, "fp32", dict(strongly_typed=False, flags=("FP16",))),
    ("int8", 10, "fp32", dict(strongly_typed=False, flags=("INT8", "FP16"), calibrate=True)),
    ("fp32", 11, "fp32", dict(strongly_typed=True)),
    ("fp16", 11, "fp32", dict(strongly_typed=True, convert_fp16=True)),
    ("fp16", 10, "fp16", dict(strongly_typed=True)),
    ("int8", 11, "int8", dict(strongly_typed=True)),
])
def test_build_recipes_for_tensorrt_10_and_11(precision, major, kind, expected):
    recipe = build_recipe(precision, major, kind)
    assert {k: getattr(recipe, k) for k in expected} == expected
    assert recipe.flags == expected.get("flags", ()) and recipe.calibrate == expected.get("calibrate", False)


def test_build_recipes_refuse_what_cannot_be_built():
    with pytest.raises(UserError, match="TensorRT 11 takes INT8 only from Q/DQ nodes"):
        build_recipe("int8", 11, "fp32")
    with pytest.raises(UserError, match="already fp16.*builds only as fp16"):
        build_recipe("fp32", 10, "fp16")
    with pytest.raises(UserError, match="already int8"):
        build_recipe("fp16", 11, "int8")


def test_onnx_with_qdq_nodes_counts_as_int8():
    nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s"],
                                                                                      ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                              [numpy_helper.from_array(np.float32(0.1), "s")])
    assert onnx_precision(helper.make_model(graph)) == "int8"


def test_plan_profiles_for_dynamic_and_fixed_inputs():
    options = build(DetectorConfig, {"tensorrt": {"max_batch": 16, "input_size": [500, 630]}}, "detector").tensorrt
    assert plan_profile(SPEC, options, batch_size=4) == Profile((1, 1, 16, 16), (4, 1, 512, 640), (16, 1, 512, 640))
    assert plan_profile(SPEC, options, batch_size=64).opt[0] == 16
    fixed = InputSpec(2, 512, 512)
    assert plan_profile(fixed, options, batch_size=4) == Profile(*[(2, 1, 512, 512)] * 3)
    defaults = build(DetectorConfig, {}, "detector").tensorrt
    assert plan_profile(SPEC, defaults, 1) == Profile((1, 1, 16, 16), (1, 1, 512, 640), (32, 1, 512, 640))
    upscaled = InputSpec(None, None, None, 0.4, 0.2, 1.0, 16, resize_factor=2.0)  # input_size is the frame's size
    assert plan_profile(upscaled, options, 4) == Profile((1, 1, 16, 16), (4, 1, 1008, 1264), (16, 1, 1008, 1264))


def test_calibration_batches_are_normalised_network_inputs():
    frames = smooth_frames([((60, 80), np.uint8)] * 5 + [((90, 70), np.uint16)] * 4, seed=7)
    batches = list(calibration_batches(frames, SPEC, (4, 1, 32, 48)))
    assert len(batches) == 2 and all(b.shape == (4, 1, 32, 48) and b.dtype == np.float32 for b in batches)
    expected, _ = prepare_numpy(frames[4:8], InputSpec(4, 32, 48, SPEC.mean, SPEC.std, 1.0, 16), 4)
    np.testing.assert_array_equal(batches[1], expected)


# ---------------------------------------------------------------------------------------------------------------
# train.py build-engine

def test_build_engine_command_checks_and_reports(lite_release, tmp_path, capsys):
    from training.cli import main

    assert main(["build-engine", "--onnx", str(lite_release), "--fp16-onnx", str(tmp_path / "half.onnx")]) == 0
    assert "differ from the fp32 model's by at most" in capsys.readouterr().err
    assert onnx_precision(load_onnx(tmp_path / "half.onnx")) == "fp16"
    assert main(["build-engine", "--onnx", str(tmp_path / "nothing")]) == 2
    assert "no ONNX file there" in capsys.readouterr().err
    assert main(["build-engine", "--onnx", str(lite_release), "--input-size", "big"]) == 2
    assert "expected HEIGHTxWIDTH" in capsys.readouterr().err
    if not tensorrt_and_gpu():
        assert main(["build-engine", "--onnx", str(lite_release), "--input-size", "128x160"]) == 2
        error = capsys.readouterr().err
        assert error.count("error: ") == 1 and ("TensorRT is not installed" in error or "NVIDIA GPU" in error)


# ---------------------------------------------------------------------------------------------------------------
# TensorRT against ONNX Runtime (only where TensorRT and a GPU are)

@pytest.mark.skipif(not tensorrt_and_gpu(), reason="needs TensorRT (the tensorrt extra) and an NVIDIA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_matches_onnxruntime(lite_release, tmp_path, precision):
    frames = smooth_frames([((128, 160), np.uint16), ((120, 150), np.uint8)], seed=8)
    reference = engine("onnxruntime", lite_release, score_threshold=0.3).detect(frames)
    options = {"precision": precision, "input_size": [128, 160], "max_batch": 4, "cache_dir": str(tmp_path)}
    plan_engine = engine("tensorrt", lite_release, score_threshold=0.3, tensorrt=options)
    found = plan_engine.detect(frames)
    if precision == "fp32":
        assert_same_detections(reference, found, box_atol=1e-2, score_atol=1e-3)
    else:
        for a, b in zip(reference, found):
            assert np.median([np.abs(b.boxes - box).max(axis=1).min() for box in a.boxes[:20]]) < 0.25
    again = engine("tensorrt", lite_release, score_threshold=0.3, tensorrt=options)
    assert again.record.plan == plan_engine.record.plan, "the second run takes the plan from the cache"
