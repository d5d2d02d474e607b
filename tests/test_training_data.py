"""DenseSIRST loading, transforms, BAG-CP and the train/test pipelines: real data where present, else small fakes."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.errors import UserError
from training.bag_cp import SkyCopyPaste
from training.densesirst import DenseSirst, Sample
from training.transforms import (CAFFE_BGR_MEAN, boxes_to_original, horizontal_flip, random_crop, resize_keep_ratio,
                                 resize_stretch, to_model_input)

HAND_CHECKED_ID = "20210725-S1-561"  # first id of test_v2: 1918x1080, 19 objects


@pytest.fixture
def devkit(shared_data) -> Path:
    return shared_data / "densesirst" / "SIRSTdevkit"


# ------------------------------------------------------------------------------------------------ fake devkits
def write_item(root: Path, image_id: str, image: np.ndarray, boxes_1based=(), sky: np.ndarray | None = None,
               target: np.ndarray | None = None, xml_text: str | None = None) -> None:
    """One id in SIRSTdevkit layout: grey PNG, VOC XML (1-based boxes), palette sky mask, 0/255 target mask."""
    height, width = image.shape
    for folder in ("PNGImages", "SIRST/BBox", "SIRST/BinaryMask", "SkySeg/PaletteMask", "Splits"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "PNGImages" / f"{image_id}.png"), image)
    objects = "".join(f"<object><name>Target</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                      f"<ymax>{d}</ymax></bndbox></object>" for a, b, c, d in boxes_1based)
    xml_text = xml_text or (f"<annotation><size><width>{width}</width><height>{height}</height><depth>1</depth>"
                            f"</size>{objects}</annotation>")
    (root / "SIRST" / "BBox" / f"{image_id}.xml").write_text(xml_text)
    palette = Image.fromarray(np.zeros_like(image) if sky is None else sky, mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])  # DenseSIRST's two colours, plus one so 2 survives saving
    palette.save(root / "SkySeg" / "PaletteMask" / f"{image_id}.png")
    target = np.zeros_like(image) if target is None else target
    cv2.imwrite(str(root / "SIRST" / "BinaryMask" / f"{image_id}_pixels0.png"), target * 255)


def write_split(root: Path, name: str, ids) -> None:
    (root / "Splits").mkdir(parents=True, exist_ok=True)
    (root / "Splits" / f"{name}.txt").write_text("\n".join(ids))


def fake_item(root: Path, image_id: str = "a", **overrides) -> None:
    image = np.full((40, 60), 30, np.uint8)
    sky = np.zeros((40, 60), np.uint8)
    sky[:20] = 1
    write_item(root, image_id, overrides.pop("image", image), overrides.pop("boxes_1based", [(5, 6, 8, 9)]),
               overrides.pop("sky", sky), **overrides)


# ------------------------------------------------------------------------------------------------ real data
def test_split_sizes(devkit):
    sizes = {split: len(DenseSirst(devkit, split)) for split in ("train_v2", "val_v2", "trainval_v2", "test_v2")}
    assert sizes == {"train_v2": 512, "val_v2": 256, "trainval_v2": 768, "test_v2": 256}
    assert set(DenseSirst(devkit, "trainval_v2").ids) == \
        set(DenseSirst(devkit, "train_v2").ids) | set(DenseSirst(devkit, "val_v2").ids)


def test_minus_one_convention_on_a_hand_checked_xml(devkit):
    test_set = DenseSirst(devkit, "test_v2")
    assert test_set.ids[0] == HAND_CHECKED_ID
    sample = test_set[0]
    assert sample.original_hw == (1080, 1918) and sample.image.shape == (1080, 1918) and sample.image.dtype == np.uint8
    assert sample.boxes.shape == (19, 4) and sample.boxes.dtype == np.float32
    # First object in the XML: xmin 825 ymin 288 xmax 829 ymax 291; last: 1335 820 1339 823. Minus one on all four.
    np.testing.assert_array_equal(sample.boxes[0], [824, 287, 828, 290])
    np.testing.assert_array_equal(sample.boxes[-1], [1334, 819, 1338, 822])
    assert not sample.difficult.any()


def test_sky_and_target_masks_are_class_ids(devkit):
    sample = DenseSirst(devkit, "test_v2")[0]
    assert sample.sky_mask.shape == sample.image.shape and sample.sky_mask.dtype == np.uint8
    values, counts = np.unique(sample.sky_mask, return_counts=True)
    assert values.tolist() == [0, 1] and counts.tolist() == [999, 2070441]  # counted with pillow
    assert np.unique(sample.target_mask).tolist() == [0, 1] and sample.target_mask.sum() == 202


def test_missing_files_are_reported_once_and_skipped(devkit, tmp_path, caplog):
    ids = DenseSirst(devkit, "test_v2", with_masks=False).ids[:4]
    for image_id in ids[:3]:
        for relative in (f"PNGImages/{image_id}.png", f"SIRST/BBox/{image_id}.xml",
                         f"SkySeg/PaletteMask/{image_id}.png", f"SIRST/BinaryMask/{image_id}_pixels0.png"):
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(devkit / relative, tmp_path / relative)
    (tmp_path / f"SIRST/BBox/{ids[3]}.xml").write_text((devkit / f"SIRST/BBox/{ids[3]}.xml").read_text())
    write_split(tmp_path, "mine", ids + ["not-there"])
    with caplog.at_level(logging.WARNING, logger="training.densesirst"):
        dataset = DenseSirst(tmp_path, "mine")
    assert len(dataset) == 3 and dataset.ids == ids[:3] and dataset.skipped_ids == [ids[3], "not-there"]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "skipped 2 of 5 ids" in warnings[0] and "not-there" in warnings[0]
    assert dataset[2].boxes.shape[1] == 4


# ------------------------------------------------------------------------------------------------ bad input
def test_missing_root_split_and_empty_split(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        DenseSirst(tmp_path / "nowhere", "train_v2")
    fake_item(tmp_path)
    write_split(tmp_path, "train", ["a"])
    with pytest.raises(UserError, match="available splits: train"):
        DenseSirst(tmp_path, "test")
    write_split(tmp_path, "empty", ["", "  "])
    with pytest.raises(UserError, match="is empty"):
        DenseSirst(tmp_path, "empty")
    write_split(tmp_path, "ghosts", ["x", "y"])
    with pytest.raises(UserError, match="none of its 2 ids"):
        DenseSirst(tmp_path, "ghosts")


def test_corrupt_png_is_a_user_error_on_load(tmp_path):
    fake_item(tmp_path)
    (tmp_path / "PNGImages" / "a.png").write_bytes(b"\x89PNG not really")
    write_split(tmp_path, "s", ["a"])
    dataset = DenseSirst(tmp_path, "s")
    with pytest.raises(UserError, match=r"cannot decode .*a\.png"):
        dataset[0]


@pytest.mark.parametrize("xml_text, message", [
    ("<annotation><object>", "cannot parse"),
    ("<annotation><object><name>Target</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
     "</bndbox></object></annotation>", "non-numeric"),
    ("<annotation><object><name>Target</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
     "</bndbox></object></annotation>", "xmax < xmin"),
])
def test_bad_xml_is_a_user_error_when_building(tmp_path, xml_text, message):
    fake_item(tmp_path, xml_text=xml_text)
    write_split(tmp_path, "s", ["a"])
    with pytest.raises(UserError, match=message):
        DenseSirst(tmp_path, "s")


def test_box_outside_the_image_is_a_user_error(tmp_path):
    fake_item(tmp_path, boxes_1based=[(5, 6, 8, 9), (55, 30, 61, 35)])  # xmax 61 > width 60
    write_split(tmp_path, "s", ["a"])
    with pytest.raises(UserError, match="outside the 60x40 image.*xmax=61"):
        DenseSirst(tmp_path, "s")[0]


def test_box_touching_the_border_is_valid(tmp_path):
    fake_item(tmp_path, boxes_1based=[(1, 1, 60, 40), (0, 0, 3, 3)])  # full image 1-based, and a 0-based xmin
    write_split(tmp_path, "s", ["a"])
    np.testing.assert_array_equal(DenseSirst(tmp_path, "s")[0].boxes, [[0, 0, 59, 39], [-1, -1, 2, 2]])


@pytest.mark.parametrize("bad_sky, message", [
    (np.full((40, 60), 2, np.uint8), r"contains values \[2\]"),
    (np.zeros((20, 60), np.uint8), "a mask must have the size of its image"),
])
def test_bad_sky_mask_is_a_user_error(tmp_path, bad_sky, message):
    fake_item(tmp_path, sky=bad_sky)
    write_split(tmp_path, "s", ["a"])
    with pytest.raises(UserError, match=message):
        DenseSirst(tmp_path, "s")[0]


def test_rgb_sky_mask_is_a_user_error(tmp_path):
    fake_item(tmp_path)
    Image.new("RGB", (60, 40), (128, 0, 0)).save(tmp_path / "SkySeg" / "PaletteMask" / "a.png")
    write_split(tmp_path, "s", ["a"])
    with pytest.raises(UserError, match="RGB image; a sky mask must be a palette"):
        DenseSirst(tmp_path, "s")[0]


def test_image_without_sky_loads_and_bag_cp_leaves_it_unchanged(tmp_path):
    fake_item(tmp_path, "a", sky=np.zeros((40, 60), np.uint8))
    fake_item(tmp_path, "b")
    write_split(tmp_path, "s", ["a", "b"])
    dataset = DenseSirst(tmp_path, "s")
    no_sky = dataset[0]
    assert not no_sky.sky_mask.any()
    for seed in range(5):
        assert SkyCopyPaste()(no_sky, dataset[1], np.random.default_rng(seed)) is no_sky


# ------------------------------------------------------------------------------------------------ transforms
def sample_with(image_hw, boxes, sky=None, target=None) -> Sample:
    height, width = image_hw
    image = np.arange(height * width, dtype=np.uint32).reshape(height, width).astype(np.uint8)
    return Sample(image=image, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                  difficult=np.zeros(len(boxes), bool), sky_mask=sky, target_mask=target, image_id="x",
                  original_hw=(height, width))


def test_stretch_scales_boxes_per_axis_and_clips():
    sky = np.ones((512, 640), np.uint8)
    sky[:, 320:] = 0
    sample = sample_with((512, 640), [[100, 50, 104, 54], [-1, -1, 2, 3], [630, 500, 640, 511]], sky=sky)
    resized = resize_stretch(sample)
    assert resized.image.shape == (512, 512) and resized.scale_factor == (0.8, 1.0)
    # x * 512/640 = 0.8 x, y unchanged; the minus-one box at -1 is clipped to 0.
    np.testing.assert_allclose(resized.boxes, [[80, 50, 83.2, 54], [0, 0, 1.6, 3], [504, 500, 512, 511]], rtol=1e-6)
    assert set(np.unique(resized.sky_mask)) == {0, 1} and resized.sky_mask[:, :255].all()
    np.testing.assert_allclose(boxes_to_original(resized.boxes[:1], resized.scale_factor), [[100, 50, 104, 54]])


def test_keep_ratio_resize_pads_image_and_masks():
    sample = sample_with((1024, 1280), [[100, 100, 110, 104]], sky=np.ones((1024, 1280), np.uint8),
                         target=np.ones((1024, 1280), np.uint8))
    resized = resize_keep_ratio(sample, pad_value=7)
    # scale min(512/1280, 512/1024) = 0.4 -> 512 x int(409.6 + 0.5) = 410 rows, then 102 rows of padding.
    assert resized.image.shape == (512, 512) and resized.scale_factor == (0.4, 410 / 1024)
    np.testing.assert_allclose(resized.boxes, [[40, 100 * 410 / 1024, 44, 104 * 410 / 1024]], rtol=1e-6)
    assert (resized.image[410:] == 7).all() and (resized.sky_mask[410:] == 255).all()
    assert (resized.sky_mask[:410] == 1).all() and (resized.target_mask[410:] == 0).all()


def test_random_crop_moves_boxes_with_pixels_and_drops_those_outside():
    target = np.zeros((512, 640), np.uint8)
    target[200:204, 300:304] = 1
    target[10:14, 10:14] = 1
    sample = sample_with((512, 640), [[300, 200, 304, 204], [10, 10, 14, 14]], target=target,
                         sky=np.ones((512, 640), np.uint8))
    for seed in range(20):
        crop = random_crop(sample, (128, 96), np.random.default_rng(seed), target_probability=1.0)
        assert crop.image.shape == crop.target_mask.shape == crop.sky_mask.shape == (96, 128)
        rows, cols = np.nonzero(crop.target_mask)
        # 128 x 96 cannot hold both targets, so exactly one survives, and its box still frames its pixels
        assert len(crop.boxes) == len(crop.difficult) == 1
        np.testing.assert_allclose(crop.boxes[0], [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    padded = random_crop(sample_with((64, 80), [[5, 5, 9, 9]]), (128, 96), np.random.default_rng(0))
    assert padded.image.shape == (96, 128) and (padded.image[64:] == 0).all()
    np.testing.assert_allclose(padded.boxes, [[5, 5, 9, 9]])


def test_flip_maps_boxes_like_pixels():
    target = np.zeros((64, 512), np.uint8)
    target[10:14, 80:84] = 1  # pixels 80..83 = box [80, 84) in continuous coordinates
    sample = sample_with((64, 512), [[80, 10, 84, 14], [80, 50, 83.2, 54]], target=target)
    flipped = horizontal_flip(sample)
    # x -> W - x: [80, 84) -> [428, 432); [80, 83.2] -> [428.8, 432].
    np.testing.assert_allclose(flipped.boxes, [[428, 10, 432, 14], [428.8, 50, 432, 54]], rtol=1e-6)
    rows, cols = np.nonzero(flipped.target_mask)
    assert (cols.min(), cols.max() + 1, rows.min(), rows.max() + 1) == (428, 432, 10, 14)
    np.testing.assert_array_equal(flipped.image, sample.image[:, ::-1])
    twice = horizontal_flip(flipped)
    np.testing.assert_allclose(twice.boxes, sample.boxes, rtol=1e-6)
    assert flipped.flipped and not twice.flipped


def test_model_input_is_the_reference_normalisation():
    image = np.full((2, 3), 100, np.uint8)
    tensor = to_model_input(image)
    assert tensor.shape == (3, 2, 3) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[:, 0, 0], [100 - m for m in CAFFE_BGR_MEAN], rtol=1e-6)
    np.testing.assert_allclose(to_model_input(image, (50.0,), (25.0,)), np.full((1, 2, 3), 2.0))


# ------------------------------------------------------------------------------------------------ BAG-CP
DST_BACKGROUND, SRC_TARGET = 20, 200


def bag_cp_pair(target_sizes=((3, 3),) * 20 + ((12, 12),)):
    """96x96 dst with sky on rows 4..47, cols 4..91 (away from the top/left border, see the -1 quirk), one non-sky
    box with fractional corners; src with flat bright targets of the given (h, w) on a dark background."""
    sky = np.zeros((96, 96), np.uint8)
    sky[4:48, 4:92] = 1
    dst = Sample(image=np.full((96, 96), DST_BACKGROUND, np.uint8),
                 boxes=np.array([[10.6, 60.2, 14.9, 65.7]], np.float32), difficult=np.zeros(1, bool),
                 sky_mask=sky, target_mask=np.zeros((96, 96), np.uint8), image_id="dst", original_hw=(96, 96))
    src_image = np.zeros((96, 96), np.uint8)
    boxes = []
    for i, (height, width) in enumerate(target_sizes):
        row, col = 2 + 16 * (i // 6), 2 + 15 * (i % 6)
        src_image[row:row + height, col:col + width] = SRC_TARGET
        boxes.append([col, row, col + width, row + height])
    src = Sample(image=src_image, boxes=np.array(boxes, np.float32).reshape(-1, 4),
                 difficult=np.zeros(len(boxes), bool), sky_mask=None, target_mask=None, image_id="src",
                 original_hw=(96, 96))
    return dst, src


def pasted_boxes(out: Sample) -> np.ndarray:
    return out.boxes[1:].astype(int)  # the single dst box comes first (it is never dropped here)


@pytest.mark.parametrize("seed", range(6))
def test_bag_cp_pastes_on_sky_and_boxes_match_pasted_pixels(seed):
    dst, src = bag_cp_pair()
    out = SkyCopyPaste()(dst, src, np.random.default_rng(seed))
    np.testing.assert_array_equal(out.boxes[0], [10, 60, 14, 65])  # dst box requantised by int() truncation
    boxes = pasted_boxes(out)
    assert len(boxes) <= len(src.boxes)
    inside = np.zeros((96, 96), bool)
    for x1, y1, x2, y2 in boxes:
        assert (x2 - x1, y2 - y1) in {(3, 3), (7, 7)}  # native 3x3, or the 12x12 target shrunk to 7x7
        assert out.sky_mask[y1:y2, x1:x2].all()  # on sky
        assert not inside[y1 - 1:y2 + 1, x1 - 1:x2 + 1].any()  # >= 1 px from every other paste
        inside[y1:y2, x1:x2] = True
        patch = out.image[y1:y2, x1:x2].astype(int)
        # dst + lambda * G * src: G's min-max range makes one corner 0 (dst kept) and the peak 1 (lambda in [.5, 1]).
        assert patch.min() == DST_BACKGROUND
        assert DST_BACKGROUND + 0.5 * SRC_TARGET - 1 <= patch.max() <= DST_BACKGROUND + SRC_TARGET
    np.testing.assert_array_equal(out.image[~inside], dst.image[~inside])  # nothing else changed
    np.testing.assert_array_equal(out.target_mask.astype(bool), inside)
    np.testing.assert_array_equal(out.sky_mask, dst.sky_mask)


@pytest.mark.parametrize("seed", range(3))
def test_sky_too_thin_for_a_window_falls_back_to_sky_pixels(seed):
    # A 6-row sky strip holds no 10x10 window, so every paste takes the fallback: a random sky pixel whose
    # rectangle must still be all sky (its top-left alone being sky is not enough).
    dst, src = bag_cp_pair(target_sizes=((3, 3),) * 20)
    dst.sky_mask[:] = 0
    dst.sky_mask[10:16, 4:92] = 1
    out = SkyCopyPaste()(dst, src, np.random.default_rng(seed))
    boxes = pasted_boxes(out)
    assert len(boxes) > 0
    assert all(dst.sky_mask[y1:y2, x1:x2].all() for x1, y1, x2, y2 in boxes)


def test_bag_cp_is_deterministic_given_a_seed():
    dst, src = bag_cp_pair()
    first, again = (SkyCopyPaste()(dst, src, np.random.default_rng(11)) for _ in range(2))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    other = SkyCopyPaste()(dst, src, np.random.default_rng(12))
    assert not np.array_equal(first.boxes, other.boxes)


def test_one_pixel_paste_saturates_as_in_the_reference():
    # A 1x1 Gaussian is 0/0 = NaN after min-max; the reference's min(255, NaN) gives 255.
    dst, src = bag_cp_pair(target_sizes=((1, 1),) * 6)
    out = SkyCopyPaste()(dst, src, np.random.default_rng(0))
    boxes = pasted_boxes(out)
    assert len(boxes) > 0
    assert all(out.image[y1, x1] == 255 for x1, y1, _, _ in boxes)


def test_source_without_boxes_leaves_the_destination_unchanged():
    dst, src = bag_cp_pair(target_sizes=())
    assert SkyCopyPaste()(dst, src, np.random.default_rng(0)) is dst
    assert SkyCopyPaste(variant="paper")(dst, src, np.random.default_rng(0)) is dst


def groups_fit_windows(out: Sample, plan, side: int) -> bool:
    boxes = pasted_boxes(out)
    starts = sorted(plan.window_starts) + [len(boxes)]
    for start, end in zip(starts[:-1], starts[1:]):
        group = boxes[start:end]
        if group[:, 2].max() - group[:, 0].min() > side or group[:, 3].max() - group[:, 1].min() > side:
            return False
    return True


@pytest.mark.parametrize("seed", range(4))
def test_reference_variant_clusters_five_per_25px_window(seed):
    dst, src = bag_cp_pair(target_sizes=((2, 2),) * 24)
    copy_paste = SkyCopyPaste()
    plan = copy_paste.plan(len(src.boxes), np.random.default_rng(seed))  # the first draws of the call below
    assert plan.window_starts == frozenset(range(0, len(plan.source_indices), 5))
    out = copy_paste(dst, src, np.random.default_rng(seed))
    assert len(pasted_boxes(out)) == len(plan.source_indices)
    assert groups_fit_windows(out, plan, 25)


def test_paper_variant_windows_and_counts():
    copy_paste = SkyCopyPaste(variant="paper")
    for seed in range(50):
        plan = copy_paste.plan(13, np.random.default_rng(seed))
        bounds = sorted(plan.window_starts) + [len(plan.source_indices)]
        per_window = np.diff(bounds)
        assert 1 <= len(per_window) <= 3 and ((8 <= per_window) & (per_window <= 12)).all()
    dst, src = bag_cp_pair(target_sizes=((1, 1), (2, 2)) * 8)
    for seed in range(4):
        plan = copy_paste.plan(len(src.boxes), np.random.default_rng(seed))
        out = copy_paste(dst, src, np.random.default_rng(seed))
        assert len(pasted_boxes(out)) == len(plan.source_indices)
        assert groups_fit_windows(out, plan, 20)


def test_bag_cp_on_real_images_pastes_on_sky(devkit):
    dataset = DenseSirst(devkit, "test_v2")
    dst, src = resize_stretch(dataset[0]), resize_stretch(dataset[1])
    out = SkyCopyPaste()(dst, src, np.random.default_rng(5))
    pasted = out.boxes[len(dst.boxes):].astype(int)
    assert len(out.boxes) > len(dst.boxes)
    changed = np.zeros(dst.image.shape, bool)
    for x1, y1, x2, y2 in pasted:
        if x2 > x1:
            assert (out.sky_mask[y1:y2, x1:x2] == 1).all()
            changed[y1:y2, x1:x2] = True
    np.testing.assert_array_equal(out.image[~changed], dst.image[~changed])


# ------------------------------------------------------------------------------------------------ pipelines
def test_training_set_repeats_and_collates(tmp_path):
    torch = pytest.importorskip("torch")
    from training.batches import ReferenceTrainingSet, ResizedTestSet, collate

    for image_id in ("a", "b"):
        fake_item(tmp_path, image_id, boxes_1based=[(5, 6, 8, 9), (20, 3, 23, 5)])
    write_split(tmp_path, "s", ["a", "b"])
    dataset = DenseSirst(tmp_path, "s")
    train = ReferenceTrainingSet(dataset, size=(64, 64), seed=3)
    assert len(train) == 6
    first, again = train[4], train[4]
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    batch = collate([train[0], train[1]])
    assert batch.images.shape == (2, 3, 64, 64) and batch.images.dtype == torch.float32
    assert batch.sky_masks.shape == (2, 64, 64) and batch.sky_masks.dtype == torch.uint8
    assert batch.original_hw.tolist() == [[40, 60], [40, 60]] and batch.image_ids == ["a", "b"]
    test_batch = collate([ResizedTestSet(DenseSirst(tmp_path, "s", with_masks=False), (64, 64))[0]])
    assert test_batch.sky_masks is None
    np.testing.assert_allclose(test_batch.scale_factors.numpy(), [[64 / 60, 64 / 40]])
