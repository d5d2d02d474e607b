"""Sources: real decoding of videos and image folders, grey conversion once, 16-bit kept, clear errors."""
import re

import cv2
import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.sources import SourceConfig, open_source
from pipeline.sources.base import SourceError


def write_video(path, frames, fps=30.0):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def colour_frames(n=12, size=(96, 128)):
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        frame = np.zeros((*size, 3), np.uint8)
        frame[..., 0], frame[..., 1], frame[..., 2] = 40, 90 + 5 * i, 160  # B, G, R differ: really colour
        frame[20:30, 10 + 3 * i:20 + 3 * i] = 255
        frames.append(frame + rng.integers(0, 5, frame.shape, dtype=np.uint8))
    return frames


def read_all(config):
    source = open_source(config)
    try:
        return source, list(source)
    finally:
        source.close()


def test_colour_video_is_converted_to_grey_once(tmp_path):
    frames = colour_frames()
    path = write_video(tmp_path / "colour.mp4", frames)
    source, images = read_all(SourceConfig(kind="auto", path=str(path)))
    assert len(images) == len(frames) == source.num_frames
    assert all(im.ndim == 2 and im.dtype == np.uint8 for im in images)
    expected = cv2.cvtColor(frames[5], cv2.COLOR_BGR2GRAY).astype(float)
    assert np.abs(images[5].astype(float) - expected).mean() < 4  # lossy codec, same picture


def test_corrupt_and_truncated_videos_fail_clearly(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="junk.mp4"):
        read_all(SourceConfig(kind="video", path=str(junk)))
    good = write_video(tmp_path / "good.mp4", colour_frames(30))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match="cut.mp4.*(corrupt|truncated)"):
        read_all(SourceConfig(kind="video", path=str(cut)))


def test_sixteen_bit_png_folder_keeps_depth_in_natural_order(tmp_path):
    for i in (1, 2, 10):
        image = np.full((40, 50), 1000 * i, np.uint16)
        image[5, 5] = 60000
        cv2.imwrite(str(tmp_path / f"f{i}.png"), image)
    source, images = read_all(SourceConfig(kind="auto", path=str(tmp_path)))
    assert source.num_frames == 3
    assert [im.dtype for im in images] == [np.uint16] * 3
    assert [int(im[0, 0]) for im in images] == [1000, 2000, 10000]  # f2 before f10
    assert images[0][5, 5] == 60000


def test_empty_folder_mixed_sizes_and_missing_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no images in"):
        read_all(SourceConfig(kind="auto", path=str(empty)))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "a.png"), np.zeros((20, 30), np.uint8))
    cv2.imwrite(str(mixed / "b.png"), np.zeros((24, 30), np.uint8))
    with pytest.raises(SourceError, match=r"b.png is 30x24 but a.png is 30x20"):
        read_all(SourceConfig(kind="images", path=str(mixed)))
    with pytest.raises(UserError, match="not found"):
        read_all(SourceConfig(kind="auto", path=str(tmp_path / "missing.mp4")))


def test_mot_sequence_reads_video_and_ground_truth(shared_data):
    folder = shared_data / "halmstad-ir-dev" / "IR_DRONE_143"
    source = open_source(SourceConfig(kind="auto", path=str(folder)))
    try:
        gt = source.ground_truth()
        first = next(iter(source))
    finally:
        source.close()
    assert source.stream_id == "IR_DRONE_143"
    assert first.shape == (256, 320) and first.dtype == np.uint8
    assert gt.shape[1] == 6 and gt[:, 0].min() == 1
    assert np.allclose(gt[0], [1, 1, 154.68, 14.75, 14.27, 10.23])


def test_sources_and_the_runner_reject_unusable_arrays_for_the_same_reasons():
    from pipeline.sources.base import frame_problem, to_grey

    for image, category, detail in [(np.zeros((8, 8), np.float32), "wrong_dtype", "pixel type float32"),
                                    (np.zeros((8, 8, 2), np.uint8), "wrong_shape", "shape (8, 8, 2)")]:
        assert frame_problem(image, None)[0] == category and detail in frame_problem(image, None)[1]
        with pytest.raises(SourceError, match=rf"cam frame 3: cannot use it as a frame \({re.escape(detail)}"):
            to_grey(image, "cam frame 3")
    colour = np.zeros((8, 8, 4), np.uint16)
    assert to_grey(colour, "cam").shape == (8, 8) and frame_problem(to_grey(colour, "cam"), None) is None
