"""The trainer: lr schedule and parameter groups against hand-computed values, exact resume, checkpoint errors,
evaluation in original pixels (an oracle must score 1.0), and the train / evaluate / export commands end to end.

Most tests run a tiny BAFE model (widths 8-16) at 64 x 64 on a synthetic devkit written to tmp_path; the ones
marked with the ``shared_data`` fixture use a few real DenseSIRST images and skip when the data is absent.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("dadaptation")
import yaml  # noqa: E402

from engines.onnxruntime_backend import OnnxRuntimeDetector  # noqa: E402
from models.config import read_model_config  # noqa: E402
from models.detector import build_detector  # noqa: E402
from models.export import ExportableDetector  # noqa: E402
from pipeline.errors import UserError  # noqa: E402
from training.checkpoint import load_model_weights, read_checkpoint, save_checkpoint  # noqa: E402
from training.cli import main  # noqa: E402
from training.config import DataConfig, ScheduleConfig, load_train_config  # noqa: E402
from training.densesirst import Annotation  # noqa: E402
from training.evaluate import predict, same_size_batches, score_split  # noqa: E402
from training.logs import CsvLog  # noqa: E402
from training.loop import Trainer  # noqa: E402
from training.optim import LrSchedule, parameter_groups  # noqa: E402
from training.release import model_entry  # noqa: E402
from training.splits import evaluation_set, training_set  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {
    "name": "tiny",
    "input": {"channels": 1, "pixel_scale": 1.0, "mean": [0.4], "std": [0.2]},
    "backbone": {"depth": 18, "base_channels": 8, "style": "pytorch", "frozen_bn": False,
                 "zero_init_residual": True},
    "neck": {"out_channels": 16, "levels": [2, 3, 4]},
    "head": {"kind": "bafe", "feat_channels": 16, "stacked_convs": 1, "gn_groups": 4, "adapter_hidden": 4,
             "regress_ranges": [[-1, 32], [32, 64], [64, math.inf]]},
    "postprocess": {"score_threshold": 0.05, "pre_top_k": 50},
}


# ------------------------------------------------------------------------------------------------ fixtures
def write_synthetic_item(root: Path, image_id: str, shape: tuple[int, int], rng: np.random.Generator) -> None:
    """A grey sky-over-ground image with 4-6 bright 5x5 targets in the sky, in SIRSTdevkit layout."""
    height, width = shape
    image = rng.normal(60, 4, shape).clip(0, 255)
    image[height // 2:] += 50  # ground
    sky = np.zeros(shape, np.uint8)
    sky[:height // 2] = 1
    target = np.zeros(shape, np.uint8)
    objects = []
    for _ in range(int(rng.integers(4, 7))):
        row, col = int(rng.integers(2, height // 2 - 7)), int(rng.integers(2, width - 7))
        image[row:row + 5, col:col + 5] = 220
        target[row:row + 5, col:col + 5] = 1
        objects.append(f"<object><name>Target</name><bndbox><xmin>{col + 1}</xmin><ymin>{row + 1}</ymin>"
                       f"<xmax>{col + 5}</xmax><ymax>{row + 5}</ymax></bndbox></object>")
    for folder in ("PNGImages", "SIRST/BBox", "SIRST/BinaryMask", "SkySeg/PaletteMask", "Splits"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "PNGImages" / f"{image_id}.png"), image.astype(np.uint8))
    (root / "SIRST" / "BBox" / f"{image_id}.xml").write_text(
        f"<annotation><size><width>{width}</width><height>{height}</height></size>{''.join(objects)}</annotation>")
    cv2.imwrite(str(root / "SIRST" / "BinaryMask" / f"{image_id}_pixels0.png"), target * 255)
    palette = Image.fromarray(sky, mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0])
    palette.save(root / "SkySeg" / "PaletteMask" / f"{image_id}.png")


@pytest.fixture(scope="module")
def devkit(tmp_path_factory) -> Path:
    """Splits train (4 images), val (2), test (2) of different sizes and aspect ratios."""
    root = tmp_path_factory.mktemp("devkit")
    rng = np.random.default_rng(0)
    shapes = [(80, 96), (64, 128), (96, 72), (80, 80), (72, 120), (90, 60), (100, 140), (64, 64)]
    ids = [f"img{i}" for i in range(len(shapes))]
    for image_id, shape in zip(ids, shapes):
        write_synthetic_item(root, image_id, shape, rng)
    for split, members in (("train", ids[:4]), ("val", ids[4:6]), ("test", ids[6:])):
        (root / "Splits" / f"{split}.txt").write_text("\n".join(members))
    return root


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_MODEL))
    return path


def train_config_file(path: Path, devkit: Path, model: Path, run_dir: Path, **sections) -> Path:
    """A train config for the tiny model: 2 iterations per epoch (4 images, batch 2), 2 epochs."""
    config = {
        "name": "tiny",
        "model": str(model),
        "data": {"root": str(devkit), "train_split": "train", "val_split": "val", "test_split": "test",
                 "input_size": [64, 64], "repeats": 1},
        "schedule": {"epochs": 2, "warmup_iters": 3, "warmup_mode": "linear", "milestones": [1]},
        "loop": {"batch_size": 2, "num_workers": 0, "device": "cpu", "seed": 3},
        "output": {"dir": str(run_dir), "log_interval": 1},
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, devkit, tiny_model_path) -> tuple[Path, Path]:
    """(config file, run folder) of one `train.py train` run of the tiny model; shared by the CLI tests."""
    folder = tmp_path_factory.mktemp("cli")
    config = train_config_file(folder / "train.yaml", devkit, tiny_model_path, folder / "run")
    assert main(["train", "--config", str(config)]) == 0
    return config, folder / "run"


# ------------------------------------------------------------------------------------------------ schedule
def test_reference_schedule_values():
    """The reference: 1152 iterations per epoch, 1/3 lr for 500 iterations, x0.1 from iterations 9216 and 18432."""
    schedule = LrSchedule.from_config(ScheduleConfig(), base_lr=1.0, iters_per_epoch=1152)
    expected = {0: 1 / 3, 499: 1 / 3, 500: 1.0, 9215: 1.0, 9216: 0.1, 18431: 0.1, 18432: 0.01, 23039: 0.01}
    assert {i: schedule.lr(i) for i in expected} == pytest.approx(expected, rel=1e-12)


def test_linear_warmup_and_lr_scaling():
    config = ScheduleConfig(warmup_iters=300, warmup_mode="linear", milestones=[2], gamma=0.5)
    schedule = LrSchedule.from_config(config, base_lr=2.0, iters_per_epoch=400)
    expected = {0: 2 / 3, 150: 2 * (1 / 3 + 2 / 3 * 0.5), 299: 2 * (1 / 3 + 2 / 3 * 299 / 300), 300: 2.0,
                799: 2.0, 800: 1.0}
    assert {i: schedule.lr(i) for i in expected} == pytest.approx(expected, rel=1e-12)


def test_no_weight_decay_on_norm_layers_and_biases():
    model = build_detector(TINY_MODEL)
    decay, no_decay = parameter_groups(model, 0.05)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert not decayed & undecayed
    assert decayed | undecayed == {n for n, p in model.named_parameters() if p.requires_grad}
    for name in ("backbone.conv1.weight", "head.conv_cls.weight", "head.scales.0.scale",
                 "head.bafe.exchange.adapter.0.weight"):
        assert name in decayed
    for name in ("backbone.bn1.weight", "backbone.bn1.bias", "head.cls_convs.1.weight",  # BN, GroupNorm
                 "head.cls_convs.1.bias", "head.conv_cls.bias", "head.bafe.exchange.adapter.0.bias",
                 "neck.lateral_convs.0.bias"):
        assert name in undecayed


# ------------------------------------------------------------------------------------------------ resume
def interrupt_after(monkeypatch, iteration: int) -> None:
    """Send SIGINT (as Ctrl-C does) during the step that completes ``iteration``."""
    original = Trainer._step

    def step(self, batch):
        values = original(self, batch)
        if self.iteration + 1 == iteration:
            os.kill(os.getpid(), signal.SIGINT)
        return values

    monkeypatch.setattr(Trainer, "_step", step)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, devkit, tiny_model_path) -> tuple[Trainer, Path]:
    """4 uninterrupted iterations (2 epochs of 2) of the tiny model, and their run folder."""
    folder = tmp_path_factory.mktemp("straight")
    trainer = Trainer(load_train_config(train_config_file(folder / "train.yaml", devkit, tiny_model_path,
                                                          folder / "run")))
    assert trainer.run().iteration == 4
    return trainer, folder / "run"


@pytest.mark.parametrize("stop_after", [2, 3], ids=["at-epoch-end", "mid-epoch"])
def test_interrupted_and_resumed_run_equals_the_straight_run(tmp_path, devkit, tiny_model_path, monkeypatch,
                                                             straight_run, stop_after):
    straight, straight_dir = straight_run
    config = load_train_config(train_config_file(tmp_path / "b.yaml", devkit, tiny_model_path, tmp_path / "split"))
    with monkeypatch.context() as patch:
        interrupt_after(patch, stop_after)
        result = Trainer(config).run()
    assert result.interrupted and result.iteration == stop_after
    assert read_checkpoint(tmp_path / "split" / "last.pt")["iteration"] == stop_after
    resumed = Trainer(config, resume=tmp_path / "split" / "last.pt")
    assert resumed.run().iteration == 4

    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert straight.optimizer.param_groups[0]["d"] == resumed.optimizer.param_groups[0]["d"]
    for a, b in zip(straight.optimizer.state.values(), resumed.optimizer.state.values()):
        assert all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)
    # per-epoch losses and val metrics: partial-epoch sums survive the interruption
    assert (straight_dir / "log_epochs.csv").read_text() == (tmp_path / "split" / "log_epochs.csv").read_text()


def test_model_configs_derive_from_a_base_key_by_key(tmp_path):
    """x2 is bafenet_tiny with input.resize_factor 2: every other key, inside sections too, comes from the base."""
    tiny = read_model_config(REPO / "configs" / "models" / "bafenet_tiny.yaml")
    x2 = read_model_config(REPO / "configs" / "models" / "bafenet_tiny_x2.yaml")
    assert x2 == {**tiny, "name": "bafenet_tiny_x2", "input": {**tiny["input"], "resize_factor": 2.0}}
    bpfpn = read_model_config(REPO / "configs" / "models" / "bpfpn_tiny.yaml")
    k2 = read_model_config(REPO / "configs" / "models" / "bpfpn_tiny_k2.yaml")
    assert bpfpn["neck"]["gils"]["enabled"] and bpfpn["neck"]["gils"]["norm"] == "batch"
    assert k2["neck"] == {**bpfpn["neck"], "gils": {**bpfpn["neck"]["gils"], "norm": "group"}}, \
        "a key two sections deep changes alone"
    (tmp_path / "a.yaml").write_text("base: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nname: b\n")
    with pytest.raises(UserError, match="leads back to itself"):
        read_model_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(UserError, match="model config file not found: .*missing.yaml"):
        read_model_config(tmp_path / "c.yaml")


def test_init_starts_a_new_run_from_a_models_weights(tmp_path, devkit, tiny_model_path, straight_run):
    """--init (fine-tuning) loads the weights and nothing else: the run starts at iteration 0 with a new optimizer."""
    trainer, straight_dir = straight_run
    config = load_train_config(train_config_file(tmp_path / "c.yaml", devkit, tiny_model_path, tmp_path / "run"))
    started = Trainer(config, init=straight_dir / "last.pt")
    assert started.iteration == 0 and not started.optimizer.state
    for (name, a), b in zip(trainer.model.state_dict().items(), started.model.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(UserError, match="give one"):
        Trainer(config, init=straight_dir / "last.pt", resume=straight_dir / "last.pt")


def test_exchange_scorer_keeps_its_init_while_the_rest_trains(straight_run):
    """Reference 2.3: the channel scorer gets no gradient, so DAdaptAdam skips it (weight decay included)."""
    trainer, _ = straight_run
    torch.manual_seed(trainer.config.loop.seed)  # the trainer seeds, then builds the model
    initial = build_detector(TINY_MODEL).state_dict()
    trained = trainer.model.state_dict()
    scorer = [key for key in initial if ".exchange.scorer." in key]
    assert scorer and all(torch.equal(initial[key], trained[key]) for key in scorer)
    for key in ("head.conv_cls.weight", "head.bafe.exchange.adapter.0.weight", "backbone.conv1.weight"):
        assert not torch.equal(initial[key], trained[key]), key


def test_checkpoint_of_another_architecture_is_a_user_error(tmp_path):
    path = save_checkpoint(tmp_path / "tiny.pt", {"model": build_detector(TINY_MODEL).state_dict(),
                                                  "model_config": TINY_MODEL})
    wider = {**TINY_MODEL, "name": "wider", "neck": {"out_channels": 32, "levels": [2, 3, 4]},
             "head": {**TINY_MODEL["head"], "feat_channels": 32}}
    with pytest.raises(UserError, match=r"does not fit the model 'wider' \(it was trained as 'tiny'\).*"
                                        r"shape mismatches \(neck\.[a-z_]+\.0\.(weight|bias) \(16"):
        load_model_weights(build_detector(wider), read_checkpoint(path), path, "wider")
    fcos = {**TINY_MODEL, "name": "fcos", "head": {**TINY_MODEL["head"], "kind": "fcos"}}
    with pytest.raises(UserError, match=r"unexpected keys \(head\.bafe\."):
        load_model_weights(build_detector(fcos), read_checkpoint(path), path, "fcos")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")


# ------------------------------------------------------------------------------------------------ evaluation
def oracle(test_set):
    """Candidates that are exactly each image's ground truth mapped into network-input pixels."""
    resized = [test_set[i] for i in range(len(test_set))]  # predict may batch them in any order: found by pixels

    def which(image):
        pixels = (image[0].numpy() * 255).round().astype(np.uint8)
        height, width = pixels.shape
        return next(s for s in resized if s.image.shape[0] <= height and s.image.shape[1] <= width
                    and (pixels[:s.image.shape[0], :s.image.shape[1]] == s.image).all())

    def candidates(images):
        batch = [which(image) for image in images]
        k = max(len(s.boxes) for s in batch)
        boxes, scores = torch.zeros(len(batch), k, 4), torch.zeros(len(batch), k)
        for n, sample in enumerate(batch):
            boxes[n, :len(sample.boxes)] = torch.from_numpy(sample.boxes)
            scores[n, :len(sample.boxes)] = torch.linspace(0.9, 0.5, len(sample.boxes))
        return boxes, scores

    return candidates


def assert_oracle_scores_one(root: Path, split: str, input_size: list[int], resize: str,
                             resize_factor: float = 1.0) -> None:
    test_set = evaluation_set(DataConfig(root=str(root), input_size=input_size, resize=resize), split,
                              resize_factor=resize_factor)
    detections = predict(oracle(test_set), test_set, batch_size=2, num_workers=0, device=torch.device("cpu"),
                         nms_iou=0.5, max_detections=100)
    result = score_split(test_set, detections)
    assert (result.ap_11point, result.ap_area, result.recall) == pytest.approx((1.0, 1.0, 1.0))


@pytest.mark.parametrize("resize, factor", [("stretch", 1), ("keep_ratio", 1), ("factor", 2), ("factor", 1.5)])
def test_evaluation_maps_boxes_back_to_original_pixels(devkit, resize, factor):
    """With 'factor' the images of a batch differ in size and are padded to the largest."""
    assert_oracle_scores_one(devkit, "train", [64, 64], resize, factor)


def test_evaluation_batches_hold_images_of_one_size():
    sizes = [(512, 640), (1024, 1280), (512, 640), None, (512, 640), (1024, 1280), None]
    annotations = [Annotation(f"img{i}", np.zeros((0, 4), np.float32), np.zeros(0, bool), hw)
                   for i, hw in enumerate(sizes)]
    assert same_size_batches(annotations, 2) == [[0, 2], [4], [1, 5], [3, 6]]


def test_factor_resize_upscales_images_and_training_windows_alike(devkit):
    """data.resize 'factor' 2: whole images become twice their size padded to a multiple of 32; a 64 x 64 training
    window is a 32 x 32 window of the image at its own size, upscaled. Either way boxes are twice as large and
    still hold the targets' bright pixels."""
    config = DataConfig(root=str(devkit), train_split="train", val_split="val", resize="factor", repeats=1,
                        copy_paste="off", flip_probability=0.0)
    whole = training_set(config, seed=0, with_masks=True, resize_factor=2.0)
    windows = training_set(replace(config, crop_size=[64, 64]), seed=0, with_masks=True, resize_factor=2.0)
    checked = 0
    for index in range(len(whole)):
        sample = whole[index]
        height, width = sample.original_hw
        assert sample.image.shape == (math.ceil(2 * height / 32) * 32, math.ceil(2 * width / 32) * 32)
        assert sample.scale_factor == (2.0, 2.0) and sample.sky_mask.shape == sample.image.shape
        window = windows[index]
        assert window.image.shape == (64, 64) and len(window.boxes) > 0
        for boxes, image in ((sample.boxes, sample.image), (window.boxes, window.image)):
            sides = boxes[:, 2:] - boxes[:, :2]
            whole_boxes = (sides > 7).all(axis=1)  # the others are clipped by the window
            assert np.all(np.abs(sides[whole_boxes] - 8) <= 0.5), "5 px targets (x2 - x1 = 4) become 8 px boxes"
            for x1, y1, x2, y2 in boxes[whole_boxes].round().astype(int):
                assert image[y1 + 2:y2 - 2, x1 + 2:x2 - 2].min() > 200, "the box holds the target's pixels"
                checked += 1
    assert checked >= 20


def test_keep_ratio_training_samples_keep_the_aspect_ratio(devkit):
    config = DataConfig(root=str(devkit), train_split="train", val_split="val", input_size=[64, 64],
                        resize="keep_ratio", repeats=1)
    samples = training_set(config, seed=0, with_masks=True)
    for index in range(len(samples)):
        sample = samples[index]
        sx, sy = sample.scale_factor
        height, width = sample.original_hw
        assert sample.image.shape == (64, 64) and sx == pytest.approx(sy, rel=0.02)
        assert round(width * sx) <= 64 and round(height * sy) <= 64 and max(round(width * sx), round(height * sy)) == 64


def real_devkit(shared_data: Path, tmp_path: Path, splits: dict[str, int]) -> Path:
    """A devkit of symlinks to the first images of real DenseSIRST splits (no data is copied)."""
    source = shared_data / "densesirst" / "SIRSTdevkit"
    root = tmp_path / "real"
    for split, count in splits.items():
        ids = (source / "Splits" / f"{split}.txt").read_text().split()[:count]
        for image_id in ids:
            for relative in (f"PNGImages/{image_id}.png", f"SIRST/BBox/{image_id}.xml",
                             f"SIRST/BinaryMask/{image_id}_pixels0.png", f"SkySeg/PaletteMask/{image_id}.png"):
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                (root / relative).symlink_to(source / relative)
        (root / "Splits").mkdir(exist_ok=True)
        (root / "Splits" / f"{split}.txt").write_text("\n".join(ids))
    return root


def test_evaluation_in_original_pixels_on_real_images(shared_data, tmp_path):
    """test_v2 starts with 1918x1080 and 1280x1024 images: far from the 512x512 network input."""
    assert_oracle_scores_one(real_devkit(shared_data, tmp_path, {"test_v2": 6}), "test_v2", [512, 512], "stretch")


@pytest.mark.parametrize("folder", sorted(path.parent for path in (REPO / "weights").glob("*/train_config.yaml")),
                         ids=lambda folder: folder.name)
def test_every_shipped_recipe_names_a_released_model_config(folder):
    """A release's recipe builds its model from a model.yaml in weights/, which does not change after the release,
    not from configs/models/, which does (bafenet_tiny_x2 is bafenet_tiny's weights: its recipe names that model)."""
    recipe = load_train_config(folder / "train_config.yaml")
    assert recipe.model == model_entry(recipe.model_path) and recipe.model.startswith("weights/")
    if folder.name != "bafenet_tiny_x2":
        assert recipe.model_path == folder / "model.yaml"


# ------------------------------------------------------------------------------------------------ commands
def test_train_command_writes_checkpoints_logs_and_curves(trained_run):
    _, run = trained_run
    for name in ("last.pt", "best.pt", "log_iterations.csv", "log_epochs.csv", "curves.png", "eval_val.json",
                 "pr_val.png", "train_config.yaml", "model_config.yaml"):
        assert (run / name).is_file(), name
    epochs = (run / "log_epochs.csv").read_text().splitlines()
    assert epochs[0].split(",")[:3] == ["epoch", "iteration", "loss"] and "val_mAP12" in epochs[0]
    assert len(epochs) == 3  # header + 2 epochs
    iterations = (run / "log_iterations.csv").read_text().splitlines()
    assert len(iterations) == 5 and "loss_seg" in iterations[0] and "step_size" in iterations[0]
    checkpoint = read_checkpoint(run / "last.pt")
    assert checkpoint["iteration"] == 4 and checkpoint["epoch"] == 2 and checkpoint["model_config"]["name"] == "tiny"
    assert checkpoint["best"]["metric"] == "mAP12"


def test_a_second_fresh_run_into_the_same_folder_is_refused(trained_run, capsys):
    config, run = trained_run
    assert main(["train", "--config", str(config)]) == 2
    assert f"--resume {run / 'last.pt'}" in capsys.readouterr().err


def test_evaluate_command_writes_metrics_json(trained_run, tmp_path):
    config, run = trained_run
    assert main(["evaluate", "--config", str(config), "--checkpoint", str(run / "best.pt"), "--split", "test",
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval_test.json").read_text())
    assert {"mAP07", "mAP12", "recall", "num_gt", "num_detections", "checkpoint", "protocol"} <= set(report)
    assert report["split"] == "test" and report["num_gt"] > 0
    assert all(0 <= report[key] <= 1 for key in ("mAP07", "mAP12", "recall"))
    assert (tmp_path / "pr_test.png").is_file()


def test_export_command_writes_an_onnx_the_engine_runs(trained_run, tmp_path, capsys):
    config, run = trained_run
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--config", str(config), "--checkpoint", str(run / "last.pt"), "--out", str(out)]) == 0
    message = capsys.readouterr().err
    score_difference, box_difference = (float(v) for v in re.search(
        r"max \|difference\| (\S+) in scores, (\S+) px in boxes", message).groups())
    assert score_difference < 1e-5 and box_difference < 1e-3
    engine = OnnxRuntimeDetector(out)
    assert engine.fixed_size == (64, 64)
    frame = np.random.default_rng(1).integers(0, 256, (90, 120), dtype=np.uint8)
    (found,) = engine.detect([frame])
    assert found.boxes.shape[1] == 4 and len(found) <= 100


def test_csv_log_takes_columns_that_appear_later(tmp_path):
    log = CsvLog(tmp_path / "log_epochs.csv")  # validation every second epoch: val columns arrive at epoch 2
    log.append({"epoch": 1, "loss": 2.0})
    log.append({"epoch": 2, "loss": 1.5, "val_mAP12": 0.3})
    log.append({"epoch": 3, "loss": 1.0})
    assert [(row["epoch"], row["val_mAP12"]) for row in log.rows()] == [("1", ""), ("2", "0.3"), ("3", "")]


def test_release_command_writes_a_model_folder_every_engine_file_agrees_with(trained_run, tmp_path, capsys):
    config, run = trained_run
    out = tmp_path / "weights" / "tiny"
    assert main(["release", "--config", str(config), "--checkpoint", str(run / "last.pt"), "--out", str(out)]) == 0
    assert "released" in capsys.readouterr().err
    assert {"model.onnx", "model.pt", "model.yaml", "train_config.yaml", "log_epochs.csv", "curves.png"} <= {
        p.name for p in out.iterdir()}
    # the state dict and model.yaml rebuild the torch model whose outputs the dynamic-size ONNX reproduces
    detector = build_detector(yaml.safe_load((out / "model.yaml").read_text()))
    detector.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    engine = OnnxRuntimeDetector(out / "model.onnx")
    assert engine.fixed_size == (None, None)
    frame = np.random.default_rng(2).integers(0, 256, (96, 128), dtype=np.uint8)
    images, _ = engine.prepare([frame], padded_batch=1)
    onnx_scores = engine.session.run(["scores"], {"images": images})[0]
    with torch.no_grad():
        _, scores = ExportableDetector(detector.eval())(torch.from_numpy(images))
    np.testing.assert_allclose(onnx_scores, scores.numpy(), atol=1e-5)


def test_wrong_architecture_on_the_command_line(trained_run, tmp_path, capsys):
    config, run = trained_run
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**TINY_MODEL, "name": "other", "head": {**TINY_MODEL["head"], "kind": "fcos"}}))
    assert main(["evaluate", "--config", str(config), "--set", f"model={other}", "--checkpoint",
                 str(run / "last.pt"), "--split", "test"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: checkpoint") and "head.bafe." in error and error.count("\n") == 1


def test_config_mistakes_are_one_line_errors(tmp_path, devkit, tiny_model_path, capsys):
    config = train_config_file(tmp_path / "t.yaml", devkit, tiny_model_path, tmp_path / "run")
    assert main(["train", "--config", str(config), "--set", "schedule.epoch=3"]) == 2
    assert "config key 'schedule.epoch': unknown key (did you mean 'schedule.epochs'?)" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--set", "data.val_split=train"]) == 2
    assert "shares 4 images with data.train_split" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["bafenet_r18_paper", "bafenet_lite_cpu", "bafenet_tiny_cpu", "bafenet_tiny_x2_cpu"])
def test_shipped_train_configs_validate(name):
    config = load_train_config(REPO / "configs" / "train" / f"{name}.yaml")
    assert config.model_path.is_file() and config.loop.batch_size in (2, 8)
    build_detector(config.model_config())


def test_lite_model_trains_on_real_images(shared_data, tmp_path):
    """One epoch of two iterations of bafenet_lite on real DenseSIRST images, BAG-CP on, at 128 x 128."""
    root = real_devkit(shared_data, tmp_path, {"train_v2": 4, "val_v2": 2})
    path = train_config_file(tmp_path / "t.yaml", root, REPO / "configs" / "models" / "bafenet_lite.yaml",
                             tmp_path / "run", data={"train_split": "train_v2", "val_split": "val_v2",
                                                     "input_size": [128, 128]}, schedule={"epochs": 1})
    result = Trainer(load_train_config(path)).run()
    assert not result.interrupted and result.iteration == 2 and (tmp_path / "run" / "best.pt").is_file()
    rows = (tmp_path / "run" / "log_iterations.csv").read_text().splitlines()
    header, values = rows[0].split(","), rows[-1].split(",")
    assert all(math.isfinite(float(values[header.index(k)])) for k in ("loss", "loss_cls", "loss_box", "loss_seg"))
