"""BP-FPN training on clips (data.kind clips): key frames with their previous frames as channels, transforms that move
all frames together, VOC evaluation of the val clips in original pixels (an oracle must score 1.0), two-iteration
training runs with k = 0 and k = 2 on synthetic MOTChallenge clips written here, and clear config errors."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("dadaptation")
import cv2  # noqa: E402
import yaml  # noqa: E402

from engines.onnxruntime_backend import OnnxRuntimeDetector  # noqa: E402
from models.detector import build_detector  # noqa: E402
from pipeline.errors import ConfigError  # noqa: E402
from pipeline.schema import build  # noqa: E402
from training.cli import main  # noqa: E402
from training.config import DataConfig, load_train_config  # noqa: E402
from training.evaluate import predict, score_split  # noqa: E402
from training.loop import Trainer  # noqa: E402
from training.splits import collate_grey, evaluation_set, training_set  # noqa: E402
from training.transforms import random_crop, random_horizontal_flip  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)
REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FRAMES = 64, 48, 12
TINY_BPFPN = {
    "name": "tiny_bpfpn",
    "input": {"channels": 1, "pixel_scale": 1.0, "mean": [0.4], "std": [0.2], "previous_frames": 0},
    "backbone": {"depth": 18, "base_channels": 8, "style": "pytorch", "frozen_bn": False,
                 "zero_init_residual": True},
    "neck": {"out_channels": 16, "levels": [2, 3, 4], "gils": {"enabled": True}, "dgr": {"weight": 0.1}},
    "head": {"kind": "fcos", "feat_channels": 16, "stacked_convs": 1, "gn_groups": 4, "min_assign_size": 4.5,
             "regress_ranges": [[-1, 32], [32, 64], [64, math.inf]]},
    "postprocess": {"score_threshold": 0.05, "pre_top_k": 50},
}


def background(frame: int) -> int:
    """Grey level of frame ``frame`` (0-based) outside the target: tells the frames of a sample apart."""
    return 20 + 6 * frame


def target_box(clip: int, frame: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the one 6 x 6 target, moving right and down."""
    return 8 + 3 * frame + 4 * clip, 8 + frame, 6, 6


def write_clip(root: Path, name: str, clip: int, gt_frames: int) -> None:
    """A MOTChallenge clip of FRAMES frames (mp4 + gt/gt.txt + seqinfo.ini); frames past ``gt_frames`` have no gt."""
    folder = root / name
    (folder / "gt").mkdir(parents=True)
    writer = cv2.VideoWriter(str(folder / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (WIDTH, HEIGHT),
                             False)
    assert writer.isOpened()
    rows = []
    for frame in range(FRAMES):
        image = np.full((HEIGHT, WIDTH), background(frame), np.uint8)
        x, y, w, h = target_box(clip, frame)
        image[y:y + h, x:x + w] = 230
        writer.write(image)
        if frame < gt_frames:
            rows.append(f"{frame + 1},1,{x},{y},{w},{h},1,1,1\n")
    writer.release()
    (folder / "gt" / "gt.txt").write_text("".join(rows))
    (folder / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nimDir=\nframeRate=30\nseqLength={FRAMES}\n"
                                        f"imWidth={WIDTH}\nimHeight={HEIGHT}\nimExt=.mp4\n")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, Path]:
    """(clips root, split file): train clip 'a' (gt on every frame), val clip 'b' (its last 2 frames negatives)."""
    root = tmp_path_factory.mktemp("clips")
    write_clip(root, "a", 0, FRAMES)
    write_clip(root, "b", 1, FRAMES - 2)
    split = root / "split.yaml"
    split.write_text(yaml.safe_dump({"train": ["a"], "val": ["b"]}))
    return root, split


def clip_data(clips: tuple[Path, Path], **values) -> dict:
    root, split = clips
    return {"kind": "clips", "clips_root": str(root), "clip_split": str(split), "frame_step": 2,
            "train_split": "train", "val_split": "val", "test_split": "val", "copy_paste": "off",
            "input_size": [64, 64], "resize": "keep_ratio", "repeats": 1, **values}


def train_config_file(tmp_path: Path, clips, previous_frames: int, head: str = "fcos", frame_spacing: int = 1,
                      **data) -> Path:
    """A two-iteration, one-epoch run of the tiny BP-FPN on the synthetic clips, validating on clip 'b'."""
    model = {**TINY_BPFPN, "input": {**TINY_BPFPN["input"], "previous_frames": previous_frames,
                                     "frame_spacing": frame_spacing},
             "head": {**TINY_BPFPN["head"], "kind": head}}
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(model))
    config = {"name": "tiny_bpfpn", "model": str(tmp_path / "model.yaml"), "data": clip_data(clips, **data),
              "schedule": {"epochs": 1, "warmup_iters": 1, "milestones": [1]},
              "loop": {"batch_size": 2, "num_workers": 0, "device": "cpu", "max_iters_per_epoch": 2},
              "output": {"dir": str(tmp_path / "run"), "log_interval": 1}}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# ----------------------------------------------------------------------------------------------------- samples
def test_samples_stack_the_previous_frames_oldest_first_key_frame_last(clips):
    config = build(DataConfig, clip_data(clips, flip_probability=0.0), "data")
    samples = training_set(config, seed=0, with_masks=False, previous_frames=2)
    assert len(samples) == FRAMES // 2
    sample = samples[2]  # key frame 4 of clip a (frame_step 2)
    assert sample.image.shape == (64, 64, 3) and sample.image_id == "a/5" and sample.original_hw == (HEIGHT, WIDTH)
    corner = sample.image[HEIGHT - 8:HEIGHT, 0:8].reshape(-1, 3).mean(axis=0)  # background only, above the pad
    np.testing.assert_allclose(corner, [background(2), background(3), background(4)], atol=3)
    assert (sample.image[HEIGHT:] == 0).all()  # keep_ratio pads 64 x 48 to 64 x 64 at the bottom
    x, y, w, h = target_box(0, 4)
    np.testing.assert_array_equal(sample.boxes, [[x, y, x + w, y + h]])

    batch = collate_grey([samples[0], samples[2]])
    assert batch.images.shape == (2, 3, 64, 64) and batch.images.dtype == torch.float32
    assert 0 <= batch.images.min() and batch.images.max() <= 1
    start = batch.images[0, :, HEIGHT - 8:HEIGHT, :8].mean(dim=(1, 2)) * 255  # the clip start repeats frame 0
    np.testing.assert_allclose(start.numpy(), [background(0)] * 3, atol=3)

    spaced = training_set(config, seed=0, with_masks=False, previous_frames=2, frame_spacing=2)[2]
    corner = spaced.image[HEIGHT - 8:HEIGHT, 0:8].reshape(-1, 3).mean(axis=0)  # key frame 4: frames 0, 2, 4
    np.testing.assert_allclose(corner, [background(0), background(2), background(4)], atol=3)

    single = training_set(config, seed=0, with_masks=False, previous_frames=0)[2]
    assert single.image.shape == (64, 64)  # k = 0: a plain grey image, as DenseSIRST samples
    np.testing.assert_array_equal(single.image, sample.image[..., 2])


def test_flip_and_crop_move_all_frames_together(clips):
    config = build(DataConfig, clip_data(clips), "data")
    sample = training_set(config, seed=0, with_masks=False, previous_frames=2).dataset[3]
    flipped = random_horizontal_flip(sample, np.random.default_rng(0), probability=1.0)
    for frame in range(3):
        np.testing.assert_array_equal(flipped.image[..., frame], sample.image[:, ::-1, frame])
    x1, y1, x2, y2 = sample.boxes[0]
    np.testing.assert_array_equal(flipped.boxes, [[WIDTH - x2, y1, WIDTH - x1, y2]])

    cropped = random_crop(sample, (32, 32), np.random.default_rng(5))
    for frame in range(3):
        alone = random_crop(replace(sample, image=sample.image[..., frame]), (32, 32), np.random.default_rng(5))
        np.testing.assert_array_equal(cropped.image[..., frame], alone.image)
        np.testing.assert_array_equal(cropped.boxes, alone.boxes)


def test_val_clips_are_scored_in_original_pixels(clips):
    """Candidates that are exactly the ground truth, in network-input pixels of a 1.5x resize, score 1.0."""
    config = build(DataConfig, clip_data(clips, input_size=[96, 96]), "data")
    test_set = evaluation_set(config, "val", previous_frames=1)
    annotations = test_set.dataset.annotations
    assert [a.image_id for a in annotations] == ["b/1", "b/3", "b/5", "b/7", "b/9", "b/11"]
    assert [len(a.boxes) for a in annotations] == [1, 1, 1, 1, 1, 0]  # frame 11 is past the gt: a negative
    x, y, w, h = target_box(1, 2)
    np.testing.assert_array_equal(annotations[1].boxes, [[x, y, x + w, y + h]])
    resized = [test_set[i] for i in range(len(test_set))]
    assert resized[1].scale_factor == (1.5, 1.5) and resized[1].image.shape == (96, 96, 2)
    served = iter(resized)

    def oracle(images):
        batch = [next(served) for _ in range(images.shape[0])]
        boxes, scores = torch.zeros(len(batch), 1, 4), torch.zeros(len(batch), 1)
        for n, sample in enumerate(batch):
            boxes[n, :len(sample.boxes)] = torch.from_numpy(sample.boxes)
            scores[n, :len(sample.boxes)] = 0.9
        return boxes, scores

    detections = predict(oracle, test_set, batch_size=2, num_workers=0, device=torch.device("cpu"), nms_iou=0.5,
                         max_detections=10)
    result = score_split(test_set, detections)
    assert result.num_gt == 5 and result.ap_area == pytest.approx(1.0) and result.recall == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("previous_frames, frame_spacing, select_metric", [(0, 1, "mAP12"), (2, 3, "pd_at_fa")])
def test_bpfpn_trains_on_clips_and_validates_on_val_clips(tmp_path, clips, previous_frames, frame_spacing,
                                                          select_metric):
    path = train_config_file(tmp_path, clips, previous_frames, frame_spacing=frame_spacing)
    trainer = Trainer(load_train_config(path, [f"evaluation.select_metric={select_metric}"]))
    assert trainer.model.backbone.conv1.in_channels == previous_frames + 1
    for samples in (trainer.train_set, trainer.val_set):
        assert samples.dataset.sequences.frame_spacing == frame_spacing
    result = trainer.run()
    assert not result.interrupted and result.iteration == 2 and (tmp_path / "run" / "best.pt").is_file()
    rows = (tmp_path / "run" / "log_iterations.csv").read_text().splitlines()
    header, values = rows[0].split(","), rows[-1].split(",")
    assert all(math.isfinite(float(values[header.index(k)])) for k in ("loss", "loss_cls", "loss_box", "loss_dgr"))
    report = json.loads((tmp_path / "run" / "eval_val.json").read_text())
    assert report["num_gt"] == 5 and all(0 <= report[key] <= 1 for key in ("mAP07", "mAP12", "recall", "pd_at_fa"))
    assert report["false_alarms_per_image"] == 0.5
    assert "val_pd_at_fa" in (tmp_path / "run" / "log_epochs.csv").read_text()
    assert result.best["metric"] == select_metric and result.best["value"] == report[select_metric]

    # the evaluate command scores a clip checkpoint the same way
    out = tmp_path / "evaluate"
    config = str(tmp_path / "train.yaml")
    assert main(["evaluate", "--config", config, "--checkpoint", str(tmp_path / "run" / "best.pt"), "--split",
                 "val", "--out", str(out)]) == 0
    again = json.loads((out / "eval_val.json").read_text())
    assert again["mAP12"] == pytest.approx(report["mAP12"]) and again["num_gt"] == 5

    # the release checks its ONNX on a val clip frame, with the previous frames for a multi-frame model
    released = tmp_path / "release"
    assert main(["release", "--config", config, "--checkpoint", str(tmp_path / "run" / "best.pt"), "--out",
                 str(released)]) == 0
    recipe = load_train_config(released / "train_config.yaml")
    assert recipe.model_path == (released / "model.yaml").resolve()  # its own model config, not one that may change
    assert recipe.model_config() == yaml.safe_load((tmp_path / "model.yaml").read_text())
    engine = OnnxRuntimeDetector(released / "model.onnx")
    assert engine.frames == previous_frames + 1 and engine.spec.frame_spacing == frame_spacing
    engine.close()


# ------------------------------------------------------------------------------------------------------ errors
def test_clip_config_mistakes_are_one_line_errors(tmp_path, clips, capsys):
    path = train_config_file(tmp_path, clips, 0)
    for override, message in [
            ("data.copy_paste=reference", "config key 'data.copy_paste': must be 'off' with kind 'clips'"),
            ("data.train_split=train_v2", "config key 'data.train_split': with kind 'clips' names a subset"),
            ("data.val_split=train", "config key 'data.val_split': must differ from train_split"),
            ("evaluation.false_alarms_per_image=0", "config key 'evaluation.false_alarms_per_image': must be above 0")]:
        assert main(["train", "--config", str(path), "--set", override]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1

    assert main(["train", "--config", str(train_config_file(tmp_path, clips, 0, head="bafe"))]) == 2
    error = capsys.readouterr().err
    assert "config key 'head.kind'" in error and "use head.kind fcos" in error and error.count("\n") == 1

    with pytest.raises(ConfigError, match="input.previous_frames.*DenseSIRST has single images"):
        training_set(DataConfig(copy_paste="off"), seed=0, with_masks=False, previous_frames=2)
    with pytest.raises(ConfigError, match="data.synthetic_clips.*0 unless kind is 'clips'"):
        build(DataConfig, {"synthetic_clips": 2}, "data")


def test_simulated_clips_join_the_train_subset_only(clips):
    config = build(DataConfig, clip_data(clips, synthetic_clips=2), "data")
    real = build(DataConfig, clip_data(clips), "data")
    train, plain = training_set(config, seed=0, with_masks=False), training_set(real, seed=0, with_masks=False)
    assert [c.name for c in train.dataset.sequences.clips] == ["a", "synthetic-1", "synthetic-2"]
    assert len(train) == len(plain) + 2 * 300 // 2  # frame_step 2
    sample = train[len(train) - 1]
    assert sample.image.shape == (64, 64) and sample.image_id == "synthetic-2/299"
    assert sum(len(a.boxes) for a in train.dataset.annotations[len(plain):]) > 100, "the simulated targets"
    assert [c.name for c in evaluation_set(config, "val").dataset.sequences.clips] == ["b"]


def test_shipped_bpfpn_config_validates():
    config = load_train_config(REPO / "configs" / "train" / "bpfpn_halmstad_cpu.yaml")
    assert config.data.kind == "clips" and config.data.copy_paste == "off"
    detector = build_detector(config.model_config())
    assert detector.config.head.kind == "fcos" and detector.config.neck.gils.enabled
    assert detector.config.neck.dgr.weight == 0.1 and detector.frames == 1


def test_shipped_config_reads_the_halmstad_val_clips(shared_data):
    if not (shared_data / "halmstad-ir-dev").is_dir():
        pytest.skip(f"needs the Halmstad clips at {shared_data / 'halmstad-ir-dev'}")
    config = load_train_config(REPO / "configs" / "train" / "bpfpn_halmstad_cpu.yaml")
    test_set = evaluation_set(config.data, "val", previous_frames=2)
    assert len(test_set) == 826
    sample = test_set[0]
    assert sample.image.shape == (256, 320, 3) and sample.original_hw == (256, 320)
