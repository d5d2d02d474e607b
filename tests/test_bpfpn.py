"""BP-FPN (GILS, DGR), the multi-frame input and the clip-sequence dataset: shapes, where gradients flow, the DGR
loss against a direct cosine computation, defaults identical to the plain FPN, ONNX parity in ONNX Runtime, and
sequences checked against an independent OpenCV decode of synthetic and real clips."""
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import cv2  # noqa: E402
import yaml  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from engines.config import DetectorConfig  # noqa: E402
from engines.onnx_graph import tensorrt_problems  # noqa: E402
from engines.onnxruntime_backend import OnnxRuntimeDetector  # noqa: E402
from models.backbones import ResNet  # noqa: E402
from models.bpfpn import DirectionalGradientRegularizer, LowLevelShortcut, space_to_depth_conv  # noqa: E402
from models.config import DgrConfig, GilsConfig, ModelConfig, NeckConfig  # noqa: E402
from models.detector import GreyToChannels, build_detector  # noqa: E402
from models.export import ExportableDetector, export_onnx  # noqa: E402
from models.heads import FCOSHead  # noqa: E402
from models.necks import FPN  # noqa: E402
from models.targets import ImageTargets  # noqa: E402
from pipeline.errors import ConfigError, UserError  # noqa: E402
from pipeline.schema import build  # noqa: E402
from simulation import SyntheticScene, SyntheticSceneConfig  # noqa: E402
from training.sequences import ClipSequences, read_clip_split  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)
REPO = Path(__file__).resolve().parents[1]
SPLIT_FILE = REPO / "configs" / "data" / "halmstad_split.yaml"


def tiny_config(neck=None, **sections) -> dict:
    """A narrow FCOS detector (width 8-16) on one grey channel; ``neck`` adds keys to the neck section."""
    config = {
        "input": {"channels": 1, "pixel_scale": 1.0, "mean": [0.4], "std": [0.2]},
        "backbone": {"depth": 18, "base_channels": 8, "frozen_bn": False, "zero_init_residual": True},
        "neck": {"out_channels": 16, "levels": [3, 4, 5], **(neck or {})},
        "head": {"kind": "fcos", "feat_channels": 16, "stacked_convs": 1, "gn_groups": 4},
    }
    config.update(sections)
    return config


def pyramid_shapes(levels, size):
    """Sizes of P_l for an input of ``size`` px: each stride-2 step of the ResNet rounds up."""
    shapes, side = {}, size
    for level in range(1, 6):
        side = (side + 1) // 2
        shapes[level] = side
    return [(1, 16, shapes[level], shapes[level]) for level in levels]


# ---------------------------------------------------------------------------------------------------------------
# GILS

@pytest.mark.parametrize("levels, kernel_size, size, source", [
    ([3, 4, 5], 1, 64, "c2"), ([3, 4, 5], 3, 66, "c2"), ([2, 3, 4], 1, 64, "c2"), ([2, 3, 4], 1, 66, "stem"),
    ([3, 4, 5], 3, 64, "stem")])
def test_gils_keeps_the_pyramid_shapes(levels, kernel_size, size, source):
    config = build(ModelConfig, tiny_config({"levels": levels, "gils": {"enabled": True, "kernel_size": kernel_size,
                                                                        "source": source}}))
    backbone = ResNet(config.backbone, 1, num_stages=levels[-1] - 1)
    neck = FPN(config.neck, backbone.out_channels, backbone.stem_channels)
    stem = backbone.stem(torch.randn(1, 1, size, size))
    outputs = neck(backbone.stages_after_stem(stem), stem)
    assert [tuple(p.shape) for p in outputs] == pyramid_shapes(levels, size)
    source_level, source_channels = (1, backbone.stem_channels) if source == "stem" else (2, backbone.out_channels[0])
    assert stem.shape[2] == (size + 1) // 2 and neck.shortcut.factor == 2 ** (levels[0] - source_level)
    assert neck.shortcut.adapter[0].in_channels == source_channels * neck.shortcut.factor ** 2


def test_space_to_depth_keeps_every_c2_value():
    """Each of the adapter's in_channels x 4 input channels sees one C2 pixel of each 2x2 block: a 1x1 conv that
    picks channel c * 4 + dy * 2 + dx returns C2[c, 2 i + dy, 2 j + dx]."""
    c2 = torch.arange(2 * 4 * 6, dtype=torch.float32).view(1, 2, 4, 6)
    for c, dy, dx in itertools.product(range(2), range(2), range(2)):
        weight = torch.zeros(1, 8, 1, 1)
        weight[0, c * 4 + dy * 2 + dx] = 1.0
        assert torch.equal(space_to_depth_conv(c2, weight, 2)[0, 0], c2[0, c, dy::2, dx::2])


@pytest.mark.parametrize("factor", [1, 2, 4])
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_gils_strided_conv_equals_its_adapter_on_the_pixel_unshuffled_source(factor, kernel_size):
    """The shortcut runs its adapter as one strided conv on the source; the adapter is defined on the source
    padded bottom/right to factor x the output size (here 1 px short where factor > 1) and pixel-unshuffled."""
    torch.manual_seed(factor * 10 + kernel_size)
    shortcut = LowLevelShortcut(GilsConfig(enabled=True, kernel_size=kernel_size), in_channels=3, out_channels=4,
                                factor=factor).double()
    short = 1 if factor > 1 else 0
    source = torch.randn(2, 3, 6 * factor - short, 5 * factor - short, dtype=torch.float64)
    padded = F.pad(source, (0, short, 0, short))
    expected = shortcut.adapter(F.pixel_unshuffle(padded, factor))
    torch.testing.assert_close(shortcut(source, (6, 5)), expected)


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("source", ["c2", "stem"])
def test_gils_detach_stops_the_shortcut_gradient_at_its_source(detach, source):
    torch.manual_seed(0)
    detector = build_detector(tiny_config({"gils": {"enabled": True, "detach": detach, "source": source}}))
    images = torch.randn(1, 1, 64, 64)

    def source_map() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(the shortcut's source: C2 or the stem's map, the stem's map, the pyramid features [C2, ..])."""
        stem = detector.backbone.stem(detector.grey_to_channels(images))
        features = detector.backbone.stages_after_stem(stem)
        return (stem if source == "stem" else features[0]), stem, features

    def backbone_gradients(shortcut_as_constant: bool) -> list[torch.Tensor]:
        """Gradients of the source map and of every backbone weight for a loss on the pyramid; optionally with the
        shortcut's output fed in as a constant, i.e. the network without the shortcut's gradient path."""
        detector.zero_grad(set_to_none=True)
        low_level, stem, features = source_map()
        low_level.retain_grad()
        shortcut = detector.neck.shortcut
        if shortcut_as_constant:
            constant = shortcut(low_level, (8, 8)).detach()
            detector.neck.shortcut = None
            outputs = detector.neck(features, stem)
            detector.neck.shortcut = shortcut
            outputs[0] = outputs[0] + constant
        else:
            outputs = detector.neck(features, stem)
        sum(p.square().mean() for p in outputs).backward()
        return [low_level.grad] + [p.grad for p in detector.backbone.parameters()]

    with_path, without_path = backbone_gradients(False), backbone_gradients(True)
    if detach:  # the backbone learns exactly as if the shortcut were not there
        for a, b in zip(with_path, without_path):
            torch.testing.assert_close(a, b)
    else:
        assert (with_path[0] - without_path[0]).abs().max() > 1e-3 * without_path[0].abs().max()

    # the shortcut alone: the adapter always learns, the backbone only without detach
    detector.zero_grad(set_to_none=True)
    detector.neck.shortcut(source_map()[0], (8, 8)).square().mean().backward()
    assert detector.neck.shortcut.adapter[0].weight.grad.abs().sum() > 0
    backbone_grads = [p.grad for p in detector.backbone.parameters() if p.requires_grad]
    if detach:
        assert all(grad is None for grad in backbone_grads)
    else:
        assert detector.backbone.conv1.weight.grad.abs().sum() > 0
        first_stage_learns = detector.backbone.layer1[0].conv1.weight.grad is not None
        assert first_stage_learns == (source == "c2")  # the stem's map is taken before the first stage
        assert detector.backbone.layer2[0].conv1.weight.grad is None  # C3 onwards is not on the shortcut path


def test_gils_gate_starts_from_the_plain_fpn_outputs():
    plain_config = build(ModelConfig, tiny_config())
    gated_config = build(ModelConfig, tiny_config({"gils": {"enabled": True, "gate": True}}))
    backbone = ResNet(plain_config.backbone, 1, num_stages=4)
    features = backbone(torch.randn(1, 1, 64, 64))
    torch.manual_seed(1)
    plain = FPN(plain_config.neck, backbone.out_channels)
    torch.manual_seed(1)
    gated = FPN(gated_config.neck, backbone.out_channels)
    for p, q in zip(plain(features), gated(features)):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    with torch.no_grad():
        gated.shortcut.gate.fill_(1.0)
    assert not torch.equal(plain(features)[0], gated(features)[0])
    torch.testing.assert_close(plain(features)[1], gated(features)[1], rtol=0, atol=0)  # only the finest changes


# ---------------------------------------------------------------------------------------------------------------
# DGR

def reference_dgr(features, weight):
    """weight x sum over pairs of mean over fine pixels of 1 - cos(fine, nearest-upsampled coarse), by hand."""
    total = 0.0
    for fine, coarse in zip(features[:-1], features[1:]):
        scale = fine.shape[2] // coarse.shape[2]
        up = coarse.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        cos = (fine * up).sum(1) / (fine.norm(dim=1) * up.norm(dim=1))
        total += (1 - cos).mean().item()
    return weight * total


def test_dgr_is_zero_when_levels_agree_and_matches_the_cosine_formula():
    regularizer = DirectionalGradientRegularizer(DgrConfig(weight=0.5), channels=4, num_levels=3)
    coarse = torch.randn(2, 4, 2, 2)
    middle = coarse.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    agreeing = [middle.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3), middle, coarse]
    assert regularizer(agreeing).item() == pytest.approx(0.0, abs=1e-6)
    assert regularizer([2.5 * agreeing[0], agreeing[1], 0.1 * coarse]).item() == pytest.approx(0.0, abs=1e-6)

    features = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    loss = regularizer(features).item()
    assert loss > 0.1
    assert loss == pytest.approx(reference_dgr(features, 0.5), rel=1e-5)


@pytest.mark.parametrize("direction", ["coarse_to_fine", "fine_to_coarse"])
def test_dgr_gradient_flows_one_way(direction):
    regularizer = DirectionalGradientRegularizer(DgrConfig(weight=1.0, direction=direction), channels=4,
                                                 num_levels=2)
    fine = torch.randn(1, 4, 8, 8, requires_grad=True)
    coarse = torch.randn(1, 4, 4, 4, requires_grad=True)
    regularizer([fine, coarse]).backward()
    learner, target = (fine, coarse) if direction == "coarse_to_fine" else (coarse, fine)
    assert target.grad is None
    assert learner.grad.abs().sum() > 0
    assert regularizer.projections[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("direction", ["coarse_to_fine", "fine_to_coarse"])
def test_dgr_in_the_detector_is_a_training_only_loss_term(direction):
    torch.manual_seed(0)
    detector = build_detector(tiny_config({"dgr": {"weight": 0.1, "direction": direction}}))
    images = torch.randn(2, 1, 64, 64)
    targets = [ImageTargets(torch.tensor([[10.0, 12.0, 30.0, 28.0]]), torch.zeros(1, dtype=torch.int64))] * 2
    detector.train()
    terms = detector.loss(detector(images), targets)
    assert set(terms) == {"cls", "box", "centerness", "dgr"}
    assert terms["dgr"].item() > 0

    terms["dgr"].backward()  # DGR alone: the level that only ever serves as a target gets no gradient
    finest, coarsest = detector.neck.output_convs[0].weight.grad, detector.neck.output_convs[-1].weight.grad
    never_learns, learns = (coarsest, finest) if direction == "coarse_to_fine" else (finest, coarsest)
    assert never_learns is None and learns.abs().sum() > 0
    assert all(p.grad is None for p in detector.head.parameters())

    detector.eval()
    with torch.no_grad():
        outputs = detector(images)
    assert outputs.neck_losses == {} and "dgr" not in detector.loss(outputs, targets)


# ---------------------------------------------------------------------------------------------------------------
# Defaults and config

def test_defaults_are_the_plain_fpn_and_reproduce_its_outputs():
    neck = NeckConfig()
    assert not neck.gils.enabled and neck.dgr.weight == 0
    config = build(ModelConfig, tiny_config())
    torch.manual_seed(0)
    detector = build_detector(config)
    torch.manual_seed(0)  # the same modules built in the same order, without the detector
    GreyToChannels(config.input)
    backbone = ResNet(config.backbone, 1, num_stages=4)
    fpn = FPN(config.neck, backbone.out_channels)
    head = FCOSHead(config.head, fpn.strides)
    assert detector.neck.shortcut is None and detector.neck.regularizer is None
    assert not any("shortcut" in key or "regularizer" in key for key in detector.state_dict())

    images = torch.randn(1, 1, 64, 64)
    for mode in (True, False):
        for module in (detector, backbone, fpn, head):
            module.train(mode)
        with torch.no_grad():
            ours, plain = detector(images), head(fpn(backbone(images)))
        for name in ("cls_logits", "box_distances", "centerness_logits"):
            for a, b in zip(getattr(ours, name), getattr(plain, name)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert ours.neck_losses == {}


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.neck.dgr.weight.*at least two levels"):
        build_detector(tiny_config({"levels": [3], "dgr": {"weight": 0.1}},
                                   head={"kind": "fcos", "feat_channels": 16, "stacked_convs": 1, "gn_groups": 4,
                                         "regress_ranges": [[-1, math.inf]]}))
    with pytest.raises(ConfigError, match="model.neck.dgr.direction.*allowed values"):
        build_detector(tiny_config({"dgr": {"weight": 0.1, "direction": "both"}}))
    with pytest.raises(ConfigError, match="model.neck.gils.kernel_size"):
        build_detector(tiny_config({"gils": {"enabled": True, "kernel_size": 5}}))
    with pytest.raises(ConfigError, match="model.input.previous_frames.*needs channels 1"):
        build_detector(tiny_config(input={"channels": 3, "previous_frames": 2}))
    with pytest.raises(ConfigError, match="model.input.previous_frames"):
        build_detector(tiny_config(input={"channels": 1, "mean": [0.4], "std": [0.2], "previous_frames": -1}))
    with pytest.raises(ConfigError, match="model.input.frame_fusion.*allowed values"):
        build_detector(tiny_config(input={"channels": 1, "mean": [0.4], "std": [0.2], "previous_frames": 2,
                                          "frame_fusion": "neck"}))
    with pytest.raises(ConfigError, match="model.input.frame_spacing.*must be 1..30, got 0"):
        build_detector(tiny_config(input={"channels": 1, "mean": [0.4], "std": [0.2], "previous_frames": 2,
                                          "frame_spacing": 0}))


def test_multi_frame_input_stacks_frames_at_the_stem():
    detector = build_detector(tiny_config(input={"channels": 1, "pixel_scale": 1.0, "mean": [0.4], "std": [0.2],
                                                 "previous_frames": 2}))
    assert detector.frames == 3 and detector.backbone.conv1.in_channels == 3
    images = torch.randn(2, 3, 64, 64, requires_grad=True)
    outputs = detector(images)
    assert outputs.cls_logits[0].shape == (2, 1, 8, 8)
    outputs.cls_logits[0].sum().backward()
    assert (images.grad.abs().sum(dim=(0, 2, 3)) > 0).all()  # every frame reaches the output


@pytest.mark.parametrize("gils", [{"enabled": False}, {"enabled": True, "source": "stem"}])
def test_finest_level_fusion_starts_as_the_single_frame_network_and_learns_from_every_frame(gils):
    """frame_fusion 'finest': one stem for all frames; at init the output is the single-frame network's on the key
    frame whatever the previous frames hold (GILS from the stem takes the key frame's stem map), yet the mix gets a
    gradient from every frame's C2, and once it is non-zero the previous frames change the output."""
    torch.manual_seed(0)
    frames_input = {"channels": 1, "pixel_scale": 1.0, "mean": [0.4], "std": [0.2], "previous_frames": 2}
    fused = build_detector(tiny_config({"gils": gils}, input={**frames_input, "frame_fusion": "finest"})).eval()
    single = build_detector(tiny_config({"gils": gils})).eval()
    assert fused.backbone.conv1.in_channels == 1 and fused.frame_fusion.mix.in_channels == 3 * 8
    missing = single.load_state_dict({k: v for k, v in fused.state_dict().items() if not k.startswith("frame_fusion")})
    assert not missing.missing_keys and not missing.unexpected_keys
    images = torch.randn(2, 3, 64, 64)
    moved = images.clone()
    moved[:, :2] = torch.randn(2, 2, 64, 64)
    with torch.no_grad():
        expected = single(images[:, -1:]).cls_logits
        for found in (fused(images).cls_logits, fused(moved).cls_logits):
            for a, b in zip(found, expected):
                torch.testing.assert_close(a, b)

    fused.train()
    fused(images).cls_logits[0].sum().backward()
    per_frame = fused.frame_fusion.mix.weight.grad.abs().view(8, 3, 8).sum(dim=(0, 2))
    assert (per_frame > 0).all()  # oldest, previous and key frame's C2 all reach the loss
    with torch.no_grad():
        fused.frame_fusion.mix.weight.normal_(std=0.1)
    fused.eval()
    with torch.no_grad():
        assert not torch.allclose(fused(images).cls_logits[0], fused(moved).cls_logits[0])
        # each image keeps its own frames: the second image's output ignores the first image's frames
        other = images.clone()
        other[0] = torch.randn(3, 64, 64)
        torch.testing.assert_close(fused(images).cls_logits[0][1], fused(other).cls_logits[0][1])


# ---------------------------------------------------------------------------------------------------------------
# Export

def test_gils_batch_norm_adapter_folds_away_in_onnxruntime_with_parity(tmp_path):
    """norm 'batch': ONNX Runtime's optimised graph has as many norms as the plain FPN's (the head's GroupNorms;
    GILS with GroupNorm adds one), and the outputs still match torch with trained-looking statistics."""
    import onnx
    import onnxruntime

    def optimised(gils: dict, name: str):
        torch.manual_seed(0)
        detector = build_detector(tiny_config({"gils": gils}, postprocess={"score_threshold": 0.0,
                                                                           "pre_top_k": 20})).eval()
        path = export_onnx(detector, tmp_path / f"{name}.onnx")
        options = onnxruntime.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{name}_optimised.onnx")
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        norms = sum(node.op_type in ("BatchNormalization", "InstanceNormalization", "GroupNormalization")
                    for node in onnx.load(options.optimized_model_filepath).graph.node)
        return detector, session, norms

    _, _, plain = optimised({"enabled": False}, "plain")
    _, _, group = optimised({"enabled": True}, "group")
    detector, _, batch = optimised({"enabled": True, "norm": "batch"}, "batch")
    assert plain > 0 and group == plain + 1 and batch == plain

    norm = detector.neck.shortcut.adapter[1]
    assert isinstance(norm, nn.BatchNorm2d)
    with torch.no_grad():
        for tensor in (norm.running_mean, norm.weight, norm.bias):
            tensor.normal_()
        norm.running_var.uniform_(0.5, 2.0)
    session = onnxruntime.InferenceSession(str(export_onnx(detector, tmp_path / "trained.onnx")),
                                           providers=["CPUExecutionProvider"])
    images = detector.normalize(torch.rand(1, 1, 64, 64))
    with torch.no_grad():
        _, scores = ExportableDetector(detector)(images)
    np.testing.assert_allclose(session.run(["scores"], {"images": images.numpy()})[0], scores.numpy(), rtol=1e-4,
                               atol=1e-6)


@pytest.mark.parametrize("fusion, gils_source", [("stem", "c2"), ("finest", "c2"), ("finest", "stem")])
def test_bpfpn_multi_frame_exports_to_onnx_with_parity(tmp_path, fusion, gils_source):
    import onnx
    import onnxruntime

    torch.manual_seed(0)
    detector = build_detector(tiny_config(
        {"gils": {"enabled": True, "gate": True, "source": gils_source}, "dgr": {"weight": 0.1}},
        input={"channels": 1, "pixel_scale": 1.0, "mean": [0.4], "std": [0.2], "previous_frames": 2,
               "frame_fusion": fusion},
        postprocess={"score_threshold": 0.0, "pre_top_k": 20}))
    with torch.no_grad():  # trained-looking gate (and mix), well-spread scores: top-K does not hinge on rounding
        detector.neck.shortcut.gate.normal_()
        if fusion == "finest":
            detector.frame_fusion.mix.weight.normal_(std=0.1)
        for conv in (detector.head.conv_cls, detector.head.conv_centerness):
            nn.init.normal_(conv.weight, std=1 / math.sqrt(conv.weight[0].numel()))
    detector.train()
    path = export_onnx(detector, tmp_path / "bpfpn.onnx")
    assert detector.training  # the export restores the mode

    model = onnx.load(str(path))
    assert {node.domain for node in model.graph.node} <= {""}  # standard ONNX ops only
    assert model.opset_import[0].version == 17
    assert not any("regularizer" in init.name for init in model.graph.initializer)  # DGR is not exported
    assert tensorrt_problems(model) == []  # either fusion and either GILS source parse in TensorRT
    # GILS pads only a source of odd size, which inputs padded to the coarsest stride (the engines') never give,
    # so the graph does not copy the stem's map once more
    assert not any(node.op_type == "Pad" for node in model.graph.node)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["frames"] == "3"
    detector.eval()
    for batch, height, width in [(2, 64, 64), (1, 96, 64)]:
        images = detector.normalize(torch.rand(batch, 3, height, width))
        with torch.no_grad():
            boxes, scores = ExportableDetector(detector)(images)
        onnx_boxes, onnx_scores = session.run(["boxes", "scores"], {"images": images.numpy()})
        assert onnx_scores.shape == (batch, 3 * 20)
        np.testing.assert_allclose(onnx_scores, scores.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(onnx_boxes, boxes.numpy(), rtol=1e-4, atol=1e-4)

    # the engine reads the frame count from the metadata and keeps that many frames per stream
    # (tests/test_multiframe_engine.py checks its detections)
    engine = OnnxRuntimeDetector(path, DetectorConfig(engine="onnxruntime", weights=str(path)))
    assert engine.frames == 3
    engine.close()


# ---------------------------------------------------------------------------------------------------------------
# Clip sequences

def write_clip(root: Path, name: str, num_frames: int, gt_rows: list[str] | None) -> Path:
    """A MOTChallenge clip whose frame i is uniformly 20 + 30 i (decodes to within a few grey levels)."""
    folder = root / name
    (folder / "gt").mkdir(parents=True)
    writer = cv2.VideoWriter(str(folder / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48), False)
    assert writer.isOpened()
    for index in range(num_frames):
        writer.write(np.full((48, 64), 20 + 30 * index, np.uint8))
    writer.release()
    (folder / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nimDir=\nframeRate=30\nseqLength={num_frames}\n"
                                        "imWidth=64\nimHeight=48\nimExt=.mp4\n")
    if gt_rows is not None:
        (folder / "gt" / "gt.txt").write_text("".join(row + "\n" for row in gt_rows))
    return folder


def test_sequences_return_the_key_frame_after_its_previous_frames(tmp_path):
    write_clip(tmp_path, "a", 6, ["1,1,10,12,4,3,1,3,1", "3,1,11,12,4,3,1,3,1", "3,2,30,20,5,5,1,3,1",
                                  "4,2,31,20,5,5,0,3,1"])  # the last row is an ignored box
    write_clip(tmp_path, "b", 3, [])
    dataset = ClipSequences(tmp_path, ["a", "b"], previous_frames=2)
    assert len(dataset) == 9
    sample = dataset[2]  # clip a, frame index 2 (gt frame 3)
    assert sample.clip == "a" and sample.key_index == 2 and sample.frames.shape == (3, 48, 64)
    np.testing.assert_allclose(sample.frames.mean(axis=(1, 2)), [20, 50, 80], atol=3)
    np.testing.assert_array_equal(sample.boxes, [[11, 12, 15, 15], [30, 20, 35, 25]])
    np.testing.assert_array_equal(sample.track_ids, [1, 2])
    start = dataset[0]  # the clip start repeats the first frame in the missing slots
    assert start.frame_indices.tolist() == [0, 0, 0] and start.boxes.tolist() == [[10, 12, 14, 15]]
    assert dataset[3].boxes.shape == (0, 4)  # ignored box dropped: a negative frame
    assert dataset[7].clip == "b" and dataset[7].frame_indices.tolist() == [0, 0, 1]

    strided = ClipSequences(tmp_path, ["a"], previous_frames=1, step=2, max_cached_clips=1)
    assert [strided[i].key_index for i in range(len(strided))] == [0, 2, 4]
    spaced = ClipSequences(tmp_path, ["a"], previous_frames=2, frame_spacing=2)
    assert [spaced[i].frame_indices.tolist() for i in (2, 3, 5)] == [[0, 0, 2], [0, 1, 3], [1, 3, 5]]
    np.testing.assert_allclose(spaced[5].frames.mean(axis=(1, 2)), [50, 110, 170], atol=3)


def test_simulated_clips_follow_the_real_ones_with_their_scene_ground_truth(tmp_path):
    write_clip(tmp_path, "a", 6, ["1,1,10,12,4,3,1,3,1"])
    scene_config = SyntheticSceneConfig(seed=4, width=96, height=64, frames=12, dtype="uint8")
    dataset = ClipSequences(tmp_path, ["a"], previous_frames=1, step=2, synthetic=[scene_config])
    assert len(dataset) == 3 + 6 and dataset.clips[1].name == "synthetic-4"
    scene = SyntheticScene(scene_config)
    sample = dataset[3 + 4]  # the simulated clip's frame 8, after frame 7
    assert sample.clip == "synthetic-4" and sample.frames.dtype == np.uint8
    np.testing.assert_array_equal(sample.frames, np.stack([scene.frame(7), scene.frame(8)]))
    rows = scene.ground_truth()[scene.ground_truth()[:, 0] == 9]
    assert len(rows) > 0
    np.testing.assert_allclose(sample.boxes, np.column_stack([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]]), atol=1e-4)
    np.testing.assert_array_equal(sample.track_ids, rows[:, 1])
    with pytest.raises(ValueError, match="must be uint8"):
        ClipSequences(tmp_path, [], synthetic=[SyntheticSceneConfig(width=96, height=64, frames=2)])


def test_sequences_report_bad_clips(tmp_path):
    write_clip(tmp_path, "good", 4, ["1,1,10,12,4,3,1,3,1"])
    with pytest.raises(UserError, match="clip folder not found.*missing"):
        ClipSequences(tmp_path, ["good", "missing"])
    write_clip(tmp_path, "no_gt", 4, None)
    with pytest.raises(UserError, match="clip no_gt: no ground truth.*gt.txt"):
        ClipSequences(tmp_path, ["no_gt"])
    broken = write_clip(tmp_path, "broken", 4, ["1,1,10,12,4,3,1,3,1"])
    (broken / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(UserError, match="cannot decode video.*broken.mp4"):
        ClipSequences(tmp_path, ["broken"])
    write_clip(tmp_path, "short", 4, ["9,1,10,12,4,3,1,3,1"])
    with pytest.raises(UserError, match="boxes on frame 9 but the clip has 4 frames"):
        ClipSequences(tmp_path, ["short"])


def test_sequences_on_a_real_clip_match_an_independent_decode(shared_data):
    clip = "IR_BIRD_027"  # the 7-bird flock
    folder = shared_data / "halmstad-ir-dev" / clip
    capture = cv2.VideoCapture(str(folder / f"{clip}.mp4"), cv2.CAP_FFMPEG)
    decoded = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    capture.release()
    gt = np.loadtxt(folder / "gt" / "gt.txt", delimiter=",")
    gt = gt[gt[:, 6] != 0]  # MOTChallenge: a 0 in column 7 marks a box to ignore

    dataset = ClipSequences(shared_data / "halmstad-ir-dev", [clip], previous_frames=4)
    assert len(dataset) == len(decoded)
    for key in (0, 2, 150, len(decoded) - 1):
        sample = dataset[key]
        assert sample.key_index == key and sample.frames.shape == (5, 256, 320)
        expected = [decoded[max(i, 0)] for i in range(key - 4, key + 1)]
        np.testing.assert_array_equal(sample.frames, np.stack(expected))
        rows = gt[gt[:, 0] == key + 1]
        np.testing.assert_allclose(sample.boxes, np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], atol=1e-4)
        np.testing.assert_array_equal(sample.track_ids, rows[:, 1])
    assert max(len(dataset[i].boxes) for i in range(0, len(dataset), 10)) >= 5  # a real multi-target clip


def test_halmstad_split_is_by_clip_and_covers_every_clip(shared_data):
    split = read_clip_split(SPLIT_FILE)
    train, val = set(split["train"]), set(split["val"])
    assert not train & val and len(train) == len(split["train"]) and len(val) == len(split["val"])
    folders = {p.name for p in (shared_data / "halmstad-ir-dev").iterdir() if p.is_dir()}
    assert train | val == folders
    assert 0.75 <= len(train) / len(folders) <= 0.85
    multi_target = set()
    for clip in folders:
        frames = np.loadtxt(shared_data / "halmstad-ir-dev" / clip / "gt" / "gt.txt", delimiter=",", ndmin=2)[:, 0]
        if len(frames) and np.unique(frames, return_counts=True)[1].max() > 1:
            multi_target.add(clip)
    assert len(multi_target) == 8 and len(multi_target & train) >= 2 and len(multi_target & val) >= 2


def test_clip_split_file_errors(tmp_path):
    path = tmp_path / "split.yaml"
    path.write_text(yaml.safe_dump({"train": ["a", "b"], "val": ["b"]}))
    with pytest.raises(UserError, match="b listed more than once"):
        read_clip_split(path)
    path.write_text(yaml.safe_dump({"train": ["a"], "test": ["b"]}))
    with pytest.raises(UserError, match="exactly the keys train, val"):
        read_clip_split(path)
    with pytest.raises(UserError, match="cannot read clip split"):
        read_clip_split(tmp_path / "absent.yaml")
    assert read_clip_split(SPLIT_FILE)["val"]  # the shipped file itself needs no data to read
