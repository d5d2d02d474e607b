"""The command line end to end, as a user runs it: real subprocesses, real outputs, bad input, signals."""
import json
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from pipeline.evaluation import read_mot_file
from tests.conftest import REPO, sigterm_pipeline

SMALL_SCENE = ["--set", "source.synthetic.width=256", "--set", "source.synthetic.height=192",
               "--set", "source.synthetic.frames=40"]


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


def test_synthetic_run_writes_every_output(tmp_path):
    result = run_cli("--out", str(tmp_path), *SMALL_SCENE)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == 40 and summary["dropped_frames"] == 0
    assert summary["stopped_by"] == "end_of_source"
    for stage in ("read", "detect", "track", "sinks", "end_to_end"):
        assert set(summary["latency_ms"][stage]) == {"p50", "p95", "max"}
    metrics = summary["metrics"]
    for key in ("MOTA", "IDF1", "HOTA", "pd", "false_alarms_per_frame"):
        assert key in metrics
    assert metrics["pd"] > 0.3, "the default detector should find a good share of the synthetic targets"
    lines = (tmp_path / "detections.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(1, 41))
    tracks = read_mot_file(tmp_path / "tracks.txt")
    assert len(tracks) > 0 and tracks[:, 0].max() <= 40
    video = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    ok, picture = video.read()
    assert ok and picture.shape == (192, 256, 3)


def test_help_and_print_config():
    result = run_cli("--help")
    assert result.returncode == 0 and "tracker.max_misses" in result.stdout and "--source" in result.stdout
    assert "/dev/video0" in result.stdout and "source.v4l2.pixel_format" in result.stdout
    result = run_cli("--print-config", "--set", "tracker.max_misses=9")
    assert result.returncode == 0 and "max_misses: 9" in result.stdout


def test_colour_video_source(tmp_path):
    from tests.test_sources import colour_frames, write_video

    video = write_video(tmp_path / "clip.mp4", colour_frames(20))
    result = run_cli("--source", str(video), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["frames"] == 20


def test_sixteen_bit_png_folder_source(tmp_path):
    from simulation import SyntheticScene, SyntheticSceneConfig

    scene = SyntheticScene(SyntheticSceneConfig(width=160, height=128, frames=12))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(len(scene)):
        frame = scene.frame(i)
        assert frame.dtype == np.uint16
        cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
    result = run_cli("--source", str(folder), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["frames"] == 12


@pytest.mark.parametrize("case", ["missing_path", "corrupt_mp4", "empty_folder", "mixed_sizes", "misspelled_key",
                                  "missing_weights", "weights_not_onnx", "unwritable_out", "missing_camera"])
def test_bad_input_gets_one_clear_error(tmp_path, case):
    out = ["--out", str(tmp_path / "run")]
    if case == "missing_path":
        assert_user_error(run_cli("--source", str(tmp_path / "nope.mp4"), *out), "not found", "nope.mp4")
    elif case == "corrupt_mp4":
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(20_000))
        assert_user_error(run_cli("--source", str(bad), *out), "bad.mp4")
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        assert_user_error(run_cli("--source", str(tmp_path / "empty"), *out), "no images in")
    elif case == "mixed_sizes":
        folder = tmp_path / "mixed"
        folder.mkdir()
        cv2.imwrite(str(folder / "1.png"), np.zeros((20, 30), np.uint8))
        cv2.imwrite(str(folder / "2.png"), np.zeros((22, 30), np.uint8))
        assert_user_error(run_cli("--source", str(folder), *out), "2.png", "one size")
    elif case == "misspelled_key":
        config = tmp_path / "c.yaml"
        config.write_text("tracker:\n  max_missses: 3\n")
        assert_user_error(run_cli("--config", str(config), *out), "tracker.max_missses", "did you mean")
    elif case == "missing_weights":
        assert_user_error(run_cli("--weights", str(tmp_path / "model.onnx"), *out), "model.onnx")
    elif case == "weights_not_onnx":
        fake = tmp_path / "model.onnx"
        fake.write_text("this is not a model")
        assert_user_error(run_cli("--weights", str(fake), *out), "model.onnx", "ONNX")
    elif case == "unwritable_out":
        blocker = tmp_path / "file"
        blocker.write_text("")
        assert_user_error(run_cli("--out", str(blocker / "run"), *SMALL_SCENE), "not writable", "--out")
    elif case == "missing_camera":
        if os.path.exists("/dev/video97"):
            pytest.skip("/dev/video97 exists on this machine")
        assert_user_error(run_cli("--source", "/dev/video97", *out), "V4L2 camera /dev/video97", "ls /dev/video*",
                          "v4l2src device=/dev/video97")


@pytest.mark.slow
def test_sigterm_mid_run_flushes_every_processed_frame(tmp_path):
    out = tmp_path / "run"
    args = ["--out", str(out), "--set", "source.synthetic.frames=3000", "--set", "outputs.video=false",
            "--set", "source.synthetic.width=320", "--set", "source.synthetic.height=256"]
    detections = out / "detections.jsonl"
    returncode, stderr = sigterm_pipeline(args, [detections], 60)
    assert returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    processed = summary["frames"]
    assert 60 <= processed < 3000 and summary["stopped_by"] == "SIGTERM"
    assert len(detections.read_text().splitlines()) == processed
    # The interrupted tracks.txt must equal a clean run over exactly the frames processed before the signal.
    reference = tmp_path / "reference"
    done = run_cli(*[a if a != str(out) else str(reference) for a in args], "--set", f"source.max_frames={processed}")
    assert done.returncode == 0, done.stderr
    assert (out / "tracks.txt").read_text() == (reference / "tracks.txt").read_text()


@pytest.mark.slow
def test_mot_sequence_is_scored_against_its_ground_truth(tmp_path, shared_data):
    clip = shared_data / "halmstad-ir-dev" / "IR_DRONE_143"
    result = run_cli("--source", str(clip), "--out", str(tmp_path), "--set", "outputs.video=false")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stream"] == "IR_DRONE_143" and summary["frames"] >= 300
    assert summary["metrics"]["num_gt"] == len(read_mot_file(clip / "gt" / "gt.txt", ground_truth=True))
    assert (tmp_path / "ground_truth.txt").is_file()
