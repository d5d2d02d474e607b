"""Torch models: shapes, frozen BN, FCOS targets and losses against hand-computed values, the BAFE channel
exchange against a direct re-computation, and ONNX export checked in ONNX Runtime and through the engine."""
import copy
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import yaml  # noqa: E402
from torch import nn  # noqa: E402

from engines.config import DetectorConfig  # noqa: E402
from engines.onnxruntime_backend import OnnxRuntimeDetector  # noqa: E402
from models.backbones import ResNet  # noqa: E402
from models.config import BackboneConfig, HeadConfig, NeckConfig, PostprocessConfig, read_model_config  # noqa: E402
from models.detector import build_detector  # noqa: E402
from models.export import ExportableDetector, export_onnx  # noqa: E402
from models.heads import ChannelExchange, FCOSHead, HeadOutputs, top_k_ascending  # noqa: E402
from models.losses import iou_log_loss, sigmoid_focal_loss, sky_segmentation_loss  # noqa: E402
from models.necks import FPN  # noqa: E402
from models.postprocess import decode_candidates  # noqa: E402
from models.targets import ImageTargets, assign_fcos_targets, centerness_targets, level_points  # noqa: E402
from pipeline.errors import ConfigError, UserError  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "models"
LOG2 = math.log(2.0)


def tiny_config(**sections) -> dict:
    """A narrow BAFE detector (width 8-16) for fast tests; ``sections`` replace whole config sections."""
    config = {
        "input": {"channels": 1, "pixel_scale": 1.0, "mean": [0.4], "std": [0.2]},
        "backbone": {"depth": 18, "base_channels": 8, "frozen_bn": False, "zero_init_residual": True},
        "neck": {"out_channels": 16, "levels": [3, 4, 5]},
        "head": {"feat_channels": 16, "stacked_convs": 1, "gn_groups": 4, "adapter_hidden": 4},
    }
    config.update(sections)
    return config


def load_config(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_model_config_builds_its_detector(path):
    """Each file in configs/models/ (its base: files merged) is a valid config; its name is the file's."""
    detector = build_detector(read_model_config(path), str(path))
    assert detector.config.name == path.stem and detector(torch.zeros(1, detector.frames, 64, 64)).cls_logits


# ---------------------------------------------------------------------------------------------------------------
# Backbone and neck

@pytest.mark.parametrize("depth, channels", [(18, [8, 16, 32, 64]), (50, [32, 64, 128, 256])])
def test_resnet_returns_c2_to_c5(depth, channels):
    backbone = ResNet(BackboneConfig(depth=depth, base_channels=8, frozen_bn=False), in_channels=3)
    features = backbone(torch.zeros(1, 3, 64, 64))
    assert backbone.out_channels == channels
    assert [tuple(f.shape) for f in features] == [(1, c, 64 // 2 ** l, 64 // 2 ** l)
                                                  for c, l in zip(channels, range(2, 6))]
    assert len(ResNet(BackboneConfig(depth=depth, base_channels=8), in_channels=1, num_stages=3)(
        torch.zeros(1, 1, 64, 64))) == 3


def test_caffe_style_puts_the_bottleneck_stride_on_the_first_1x1_conv():
    caffe = ResNet(BackboneConfig(depth=50, base_channels=8, style="caffe"), in_channels=3).layer2[0]
    pytorch = ResNet(BackboneConfig(depth=50, base_channels=8, style="pytorch"), in_channels=3).layer2[0]
    assert (caffe.conv1.stride, caffe.conv2.stride) == ((2, 2), (1, 1))
    assert (pytorch.conv1.stride, pytorch.conv2.stride) == ((1, 1), (2, 2))
    assert caffe.downsample[0].stride == pytorch.downsample[0].stride == (2, 2)


def test_frozen_bn_keeps_running_statistics_and_parameters_fixed():
    backbone = ResNet(BackboneConfig(depth=18, base_channels=8, frozen_bn=True), in_channels=1)
    with torch.no_grad():  # running statistics far from what a batch gives
        for bn in (m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.fill_(0.3)
            bn.running_var.fill_(2.0)
    before = copy.deepcopy(backbone.state_dict())
    images = torch.randn(2, 1, 64, 64)
    backbone.train()
    train_output = backbone(images)[-1]
    train_output.sum().backward()
    bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not bn.training for bn in bns)
    assert all(p.grad is None and not p.requires_grad for bn in bns for p in bn.parameters())
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())
    assert backbone.conv1.weight.grad is not None  # frozen_stages -1: the convs still train
    backbone.eval()
    assert torch.allclose(backbone(images)[-1], train_output)


def test_trainable_bn_and_frozen_stages():
    backbone = ResNet(BackboneConfig(depth=18, base_channels=8, frozen_bn=False, frozen_stages=1), in_channels=1)
    backbone.train()
    assert not backbone.bn1.training and not backbone.layer1[0].bn1.training and backbone.layer2[0].bn1.training
    assert not any(p.requires_grad for p in [*backbone.conv1.parameters(), *backbone.layer1.parameters()])
    assert all(p.requires_grad for p in backbone.layer2.parameters())


@pytest.mark.parametrize("levels", [[3, 4, 5], [2, 3, 4, 5], [2, 3]])
def test_fpn_levels_shapes_and_top_down_wiring(levels):
    fpn = FPN(NeckConfig(out_channels=16, levels=levels), backbone_channels=[8, 16, 32, 64])
    features = [torch.randn(1, c, 64 // 2 ** l, 64 // 2 ** l) for c, l in zip([8, 16, 32, 64], range(2, 6))]
    outputs = fpn(features)
    assert fpn.strides == [2 ** l for l in levels]
    assert [tuple(p.shape) for p in outputs] == [(1, 16, 64 // 2 ** l, 64 // 2 ** l) for l in levels]
    # a change in the coarsest input reaches every output (top-down), one in the finest only its own level
    for changed, reached in ((levels[-1], levels), (levels[0], levels[:1])):
        perturbed = [f + (l == changed) for f, l in zip(features, range(2, 6))]
        differs = [not torch.allclose(a, b) for a, b in zip(outputs, fpn(perturbed))]
        assert differs == [l in reached for l in levels]


# ---------------------------------------------------------------------------------------------------------------
# Heads

@pytest.mark.parametrize("kind", ["bafe", "fcos"])
def test_head_output_shapes_and_init(kind):
    config = tiny_config()
    config["head"]["kind"] = kind
    detector = build_detector(config)
    outputs = detector(torch.zeros(2, 1, 64, 64))
    sizes = [(8, 8), (4, 4), (2, 2)]
    assert outputs.strides == [8, 16, 32]
    assert [tuple(t.shape) for t in outputs.cls_logits] == [(2, 1, *s) for s in sizes]
    assert [tuple(t.shape) for t in outputs.box_distances] == [(2, 4, *s) for s in sizes]
    assert [tuple(t.shape) for t in outputs.centerness_logits] == [(2, 1, *s) for s in sizes]
    assert (outputs.seg_logits is None) == (kind == "fcos")
    if kind == "bafe":
        assert [tuple(t.shape) for t in outputs.seg_logits] == [(2, 1, *s) for s in sizes]
    head = detector.head
    assert head.conv_cls.bias.item() == pytest.approx(-math.log(99))
    assert all(s.scale.item() == 1.0 for s in head.scales)
    assert all((d > 0).all() for d in outputs.box_distances)  # exp() distances


def hand_outputs(cls_logits, distances, centerness, seg=None, stride=8) -> HeadOutputs:
    """Head outputs of one level from tensors [N, C, H, W]."""
    return HeadOutputs([cls_logits], [distances], [centerness], None if seg is None else [seg], [stride])


def test_fcos_targets_on_a_hand_made_box():
    # 32 x 32 input, strides 8 (points 4, 12, 20, 28) and 16 (points 8, 24); box x 3..21, y 5..15
    points = torch.cat([level_points(4, 4, 8), level_points(2, 2, 16)])
    ranges = torch.tensor([[-1.0, 12.0]] * 16 + [[12.0, math.inf]] * 4)
    box = torch.tensor([[3.0, 5.0, 21.0, 15.0]])
    labels, distances, _ = assign_fcos_targets(points, ranges, box, torch.tensor([0]), num_classes=1)
    # stride 8: points strictly inside are (4, 12), (12, 12), (20, 12) with largest distances 17, 9, 17;
    # only (12, 12) (index 1 * 4 + 1) is within [-1, 12]. Stride 16: (8, 8) (index 16), distances 5, 3, 13, 7
    assert torch.nonzero(labels == 0).flatten().tolist() == [5, 16]
    assert (labels[[i for i in range(20) if i not in (5, 16)]] == 1).all()
    assert distances[5].tolist() == [9.0, 7.0, 9.0, 3.0]
    assert distances[16].tolist() == [5.0, 3.0, 13.0, 7.0]
    assert (distances[labels == 1] == 0).all()
    expected = [math.sqrt(1.0 * 3 / 7), math.sqrt(5 / 13 * 3 / 7)]
    assert centerness_targets(distances[[5, 16]]).tolist() == pytest.approx(expected)


def test_fcos_targets_boundary_smallest_area_and_empty_images():
    points, ranges = level_points(1, 2, 8), torch.tensor([[-1.0, math.inf]] * 2)  # points (4, 4), (12, 4)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 8.0], [2.0, 2.0, 6.0, 6.0], [12.0, 0.0, 14.0, 8.0]])
    labels, distances, _ = assign_fcos_targets(points, ranges, boxes, torch.tensor([0, 1, 2]), num_classes=3)
    # (4, 4) is in boxes 0 and 1: the smaller (1) wins; (12, 4) lies on box 2's left edge: not inside, so box 0
    assert labels.tolist() == [1, 0]
    assert distances.tolist() == [[2.0, 2.0, 2.0, 2.0], [12.0, 4.0, 4.0, 4.0]]
    for no_boxes in (torch.zeros((0, 4)), torch.zeros((1, 4))):  # none, and the empty box a paste can leave
        no_labels = torch.zeros(len(no_boxes), dtype=torch.long)
        labels, distances, _ = assign_fcos_targets(points, ranges, no_boxes, no_labels, num_classes=1)
        assert (labels == 1).all() and (distances == 0).all()


def test_min_assign_size_gives_a_tiny_box_the_nearest_location_and_keeps_the_true_box_as_goal():
    points, ranges = level_points(4, 4, 4), torch.tensor([[-1.0, math.inf]] * 16)  # points 2, 6, 10, 14
    box = torch.tensor([[6.5, 6.5, 9.5, 9.5]])  # 3 px, strictly contains no point of the stride-4 grid
    labels, _, _ = assign_fcos_targets(points, ranges, box, torch.tensor([0]), num_classes=1)
    assert (labels == 1).all()  # the reference: no positive at all
    labels, goal, assignment = assign_fcos_targets(points, ranges, box, torch.tensor([0]), num_classes=1,
                                                   min_size=4.0)
    # grown to exactly one stride, 6..10: the points 6 and 10 lie on its edges, not strictly inside
    assert torch.nonzero(labels == 0).numel() == 0
    labels, goal, assignment = assign_fcos_targets(points, ranges, box, torch.tensor([0]), num_classes=1,
                                                   min_size=4.5)
    # grown to 5.75..10.25: points 6 and 10 on each axis -> (6, 6), (10, 6), (6, 10), (10, 10) = indices 5, 6, 9, 10
    assert torch.nonzero(labels == 0).flatten().tolist() == [5, 6, 9, 10]
    # point (6, 6) lies 0.5 px outside the true box on the left and top: those distances clip to 0
    assert goal[5].tolist() == [0.0, 0.0, 3.5, 3.5]
    assert assignment[5].tolist() == pytest.approx([0.25, 0.25, 4.25, 4.25])
    assert (goal[labels == 1] == 0).all() and (assignment[labels == 1] == 0).all()


def test_focal_loss_matches_the_formula():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 2, generator=generator, dtype=torch.float64) * 3
    targets = (torch.rand(50, 2, generator=generator) < 0.3).double()
    p = 1 / (1 + np.exp(-logits.numpy()))
    t = targets.numpy()
    expected = -0.25 * (1 - p) ** 2 * np.log(p) * t - 0.75 * p ** 2 * np.log(1 - p) * (1 - t)
    np.testing.assert_allclose(sigmoid_focal_loss(logits, targets, 0.25, 2.0).numpy(), expected, rtol=1e-10)


def test_iou_log_loss_on_hand_values():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    targets = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 4.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    # overlap 1 / union 7; identical; disjoint -> IoU clamped at 1e-6
    assert iou_log_loss(boxes, targets).tolist() == pytest.approx([math.log(7), 0.0, -math.log(1e-6)], abs=1e-5)


def test_sky_loss_picks_the_top_left_pixel_per_cell_and_ignores_255():
    mask = torch.zeros(1, 16, 16, dtype=torch.uint8)
    mask[0, 0, 8] = 1  # top-left of the stride-8 cell (0, 1)
    mask[0, 9, 9] = 1  # inside cell (1, 1) but not its top-left: ignored by nearest resizing
    mask[0, 8, 0] = 255  # top-left of cell (1, 0): carries no loss
    level8 = torch.tensor([[[[1.0, 2.0], [3.0, -1.0]]]])  # 2 x 2 logits at stride 8
    level16 = torch.tensor([[[[0.5]]]])  # 1 x 1 at stride 16; target = mask[0, 0] = 0

    def bce(x, y):
        return math.log(1 + math.exp(x)) - x * y

    expected = (bce(1.0, 0) + bce(2.0, 1) + bce(-1.0, 0) + bce(0.5, 0)) / 5  # mean over all 5 logits
    assert sky_segmentation_loss([level8, level16], mask).item() == pytest.approx(expected)


def test_head_loss_terms_on_hand_values():
    config = HeadConfig(kind="fcos", feat_channels=16, gn_groups=4, regress_ranges=[[-1.0, math.inf]])
    head = FCOSHead(config, strides=[8])
    # one image, 2 x 2 locations at stride 8: (4, 4), (12, 4), (4, 12), (12, 12); the box holds only (12, 12)
    target = ImageTargets(torch.tensor([[10.0, 9.0, 16.0, 16.0]]), torch.tensor([0]))
    goal = torch.tensor([2.0, 3.0, 4.0, 4.0])
    distances = torch.ones(1, 4, 2, 2)
    distances[0, :, 1, 1] = goal  # exact box at the positive: IoU 1
    outputs = hand_outputs(torch.zeros(1, 1, 2, 2), distances, torch.zeros(1, 1, 2, 2))
    losses = head.loss(outputs, [target])
    # logits 0 -> p = 0.5: focal 0.25 * 0.25 * log2 for the positive, 0.75 * 0.25 * log2 for each negative
    assert losses["cls"].item() == pytest.approx((0.25 + 3 * 0.75) * 0.25 * LOG2)
    assert losses["box"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["centerness"].item() == pytest.approx(LOG2)  # BCE of logit 0 is log 2 for any target
    distances[0, :, 1, 1] = torch.tensor([2.0, 3.0, 4.0, 11.0])  # predicted box 6 x 14 over the 6 x 7 target
    assert head.loss(outputs, [target])["box"].item() == pytest.approx(math.log(2))
    empty = head.loss(outputs, [ImageTargets(torch.zeros((0, 4)), torch.zeros(0, dtype=torch.long))])
    assert empty["box"].item() == 0 and empty["centerness"].item() == 0
    assert empty["cls"].item() == pytest.approx(4 * 0.75 * 0.25 * LOG2)  # normalised by max(num_pos, 1)


def test_channel_exchange_swaps_exactly_k_channels_through_the_shared_mlp():
    torch.manual_seed(0)
    exchange = ChannelExchange(channels=8, ratio=0.5, hidden=3)
    for p in exchange.scorer.parameters():  # spread the scores so the ranking is clear-cut
        nn.init.normal_(p, std=0.5)
    seg = torch.randn(2, 8, 5, 6, requires_grad=True)
    cls = torch.randn(2, 8, 5, 6, requires_grad=True)
    new_seg, new_cls = exchange(seg, cls)
    with torch.no_grad():
        seg_scores, cls_scores = exchange.scorer(seg), exchange.scorer(cls)
    mlp = exchange.adapter
    for n in range(2):
        seg_top = sorted(torch.argsort(seg_scores[n], descending=True)[:4].tolist())
        cls_top = sorted(torch.argsort(cls_scores[n], descending=True)[:4].tolist())
        for received, own, own_top, sender, sender_top in ((new_seg, seg, seg_top, cls, cls_top),
                                                           (new_cls, cls, cls_top, seg, seg_top)):
            changed = [c for c in range(8) if not torch.equal(received[n, c], own[n, c])]
            assert changed == own_top  # exactly K = 8 * 0.5 channels, the receiver's own top-K
            sent = sender[n, sender_top].detach().permute(1, 2, 0)  # [H, W, K], ascending channel order
            hidden = torch.relu(sent @ mlp[0].weight.T + mlp[0].bias)
            expected = (hidden @ mlp[2].weight.T + mlp[2].bias).permute(2, 0, 1)
            torch.testing.assert_close(received[n, own_top].detach(), expected)
    (new_seg.square().sum() + new_cls.square().sum()).backward()
    assert all(p.grad is None for p in exchange.scorer.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in exchange.adapter.parameters())


def test_top_k_ascending_breaks_ties_by_lower_index():
    scores = torch.tensor([[0.0, 3.0, 0.0, 3.0, 1.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    assert top_k_ascending(scores, 3).tolist() == [[1, 3, 4], [0, 1, 2]]
    assert top_k_ascending(scores, 4).tolist() == [[0, 1, 3, 4], [0, 1, 2, 3]]
    assert top_k_ascending(scores, 6).tolist() == [list(range(6))] * 2


def test_detector_loss_trains_everything_but_the_scorer():
    detector = build_detector(tiny_config())
    assert detector.head.bafe.exchange.num_exchanged == 8  # int(16 * 0.5)
    images = torch.randn(2, 1, 64, 64)
    sky = torch.zeros(64, 64, dtype=torch.uint8)
    sky[:32] = 1
    targets = [ImageTargets(torch.tensor([[20.0, 20.0, 30.0, 29.0], [40.0, 8.0, 43.0, 12.0]]),
                            torch.tensor([0, 0]), sky)] * 2
    losses = detector.loss(detector(images), targets)
    assert set(losses) == {"cls", "box", "centerness", "seg"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    scorer = {id(p) for p in detector.head.bafe.exchange.scorer.parameters()}
    trainable = [(name, p) for name, p in detector.named_parameters() if p.requires_grad]
    assert all((p.grad is None) == (id(p) in scorer) for _, p in trainable), [
        name for name, p in trainable if (p.grad is None) != (id(p) in scorer)]
    with pytest.raises(UserError, match="sky masks"):
        detector.loss(detector(images), [ImageTargets(targets[0].boxes, targets[0].labels)] * 2)


def test_grey_input_becomes_each_channels_normalisation():
    detector = build_detector(load_config("bafenet_r18_paper"))
    assert detector.input_normalization == pytest.approx(
        {"mean": (102.9801 + 115.9465 + 122.7717) / 3, "std": 1.0, "input_scale": 255.0, "resize_factor": 1.0,
         "size_divisor": 32})
    grey = torch.rand(1, 1, 4, 4)
    channels = detector.grey_to_channels(detector.normalize(grey))
    expected = torch.cat([grey * 255 - m for m in (102.9801, 115.9465, 122.7717)], dim=1)
    torch.testing.assert_close(channels, expected, rtol=0, atol=1e-4)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.backbone.zero_init_residual"):
        build_detector(tiny_config(backbone={"frozen_bn": True, "zero_init_residual": True}))
    with pytest.raises(ConfigError, match="model.head.regress_ranges.*one range per neck level"):
        build_detector(tiny_config(neck={"out_channels": 16, "levels": [2, 3, 4, 5]}))
    with pytest.raises(ConfigError, match="model.neck.levels"):
        build_detector(tiny_config(neck={"out_channels": 16, "levels": [3, 5]}))
    with pytest.raises(ConfigError, match="model.input.mean.*one finite number per input channel"):
        build_detector(tiny_config(input={"channels": 3, "mean": [0.4]}))
    with pytest.raises(ConfigError, match="unknown key.*did you mean 'model.head.exchange_ratio'"):
        build_detector(tiny_config(head={"exchange_rate": 0.5}))


# ---------------------------------------------------------------------------------------------------------------
# Decoding and export

def test_decode_thresholds_before_centerness_and_fills_missing_slots():
    logit = math.log(0.6 / 0.4)  # class probability 0.6; centerness probability 0.5
    cls_logits = torch.tensor([[[[logit, -10.0], [-logit, -10.0]]]])  # probabilities 0.6, ~0, 0.4, ~0
    distances = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1).expand(1, 4, 2, 2)
    boxes, scores = decode_candidates(hand_outputs(cls_logits, distances, torch.zeros(1, 1, 2, 2)),
                                      PostprocessConfig(score_threshold=0.5, pre_top_k=6))
    assert boxes.shape == (1, 6, 4) and scores.shape == (1, 6)
    assert scores[0, 0].item() == pytest.approx(0.3)  # 0.6 x 0.5; 0.4 is under the threshold: scored 0
    assert (scores[0, 1:] == 0).all()
    assert boxes[0, 0].tolist() == [4 - 1, 4 - 2, 4 + 3, 4 + 4]  # the point (4, 4) minus / plus (l, t, r, b)


def calibrated_for_export(detector):
    """Eval-mode detector whose outputs are well separated: head BN running statistics from one batch (fresh
    ones leave the exchange's scores tied at ~1e-13), and spread class / centerness logits, so the top-K order
    and the channel ranking do not hinge on float rounding."""
    for bn in (m for m in detector.head.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch sets the statistics
    detector.train()
    with torch.no_grad():
        detector(torch.randn(2, 1, 64, 64))
        for conv in (detector.head.conv_cls, detector.head.conv_centerness):
            nn.init.normal_(conv.weight, std=1 / math.sqrt(conv.weight[0].numel()))
    return detector.eval()


@pytest.mark.parametrize("name, input_size", [("bafenet_lite", None), ("bafenet_r18_paper", (64, 64))])
def test_onnx_export_matches_torch_and_runs_in_the_engine(tmp_path, name, input_size):
    import onnxruntime

    torch.manual_seed(0)
    config = load_config(name)
    config["postprocess"] = {"score_threshold": 0.0, "pre_top_k": 20}
    detector = calibrated_for_export(build_detector(config))
    path = export_onnx(detector, tmp_path / f"{name}.onnx", input_size=input_size)
    assert not detector.training  # the export restores the mode

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    metadata = session.get_modelmeta().custom_metadata_map
    assert {k: float(metadata[k]) for k in detector.input_normalization} == pytest.approx(
        detector.input_normalization)
    sizes = [(2, 64, 64)] if input_size else [(2, 64, 64), (1, 48, 80)]  # dynamic height / width
    for batch, height, width in sizes:
        images = detector.normalize(torch.rand(batch, 1, height, width))
        with torch.no_grad():
            boxes, scores = ExportableDetector(detector)(images)
        onnx_boxes, onnx_scores = session.run(["boxes", "scores"], {"images": images.numpy()})
        assert onnx_boxes.shape == (batch, 3 * 20, 4) and onnx_scores.shape == (batch, 3 * 20)
        np.testing.assert_allclose(onnx_scores, scores.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(onnx_boxes, boxes.numpy(), rtol=1e-4, atol=1e-4)

    engine = OnnxRuntimeDetector(path, DetectorConfig(engine="onnxruntime", weights=str(path), score_threshold=0.0,
                                                      nms_iou=1.0, max_detections=1000))
    frame = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    (found,) = engine.detect([frame])
    with torch.no_grad():
        unit = torch.from_numpy(frame.astype(np.float32) / 255)[None, None]
        boxes, scores = ExportableDetector(detector)(detector.normalize(unit))
    best = int(scores[0].argmax())
    assert len(found) > 0 and found.scores[0] == pytest.approx(scores[0, best].item(), rel=1e-4)
    np.testing.assert_allclose(found.boxes[0], np.clip(boxes[0, best].numpy(), 0, 64), rtol=1e-4, atol=1e-3)


def test_model_configs_build():
    paper = build_detector(load_config("bafenet_r18_paper"))
    lite = build_detector(load_config("bafenet_lite"))
    assert sum(p.numel() for p in paper.parameters()) == pytest.approx(21.71e6, rel=1e-3)
    assert paper.strides == [8, 16, 32] and lite.strides == [4, 8, 16]
    assert lite.head.bafe.exchange.num_exchanged == 32 and paper.head.bafe.exchange.num_exchanged == 128
    assert lite.input_normalization == pytest.approx({"mean": 0.399, "std": 0.227, "input_scale": 1.0,
                                                      "resize_factor": 1.0, "size_divisor": 16})
