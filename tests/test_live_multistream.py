"""Several streams through one batching detector: per-stream results equal separate runs, and SIGTERM with four
streams running flushes every output of every stream."""
import json
import signal
import subprocess
import sys

import pytest
import yaml

from engines import create_detector
from engines.config import DetectorConfig
from pipeline.runner import MultiStreamRunner, Stream
from pipeline.sinks.files import MotTrackWriter
from pipeline.sources.synthetic import SyntheticSource
from simulation import SyntheticSceneConfig
from tests.conftest import REPO, sigterm_pipeline
from trackers import create_tracker

SIZES = {"s0": (256, 192), "s1": (320, 240), "s2": (192, 160)}


class BatchRecorder:
    """The real classical detector, recording which streams (told apart by frame size) share each batch."""

    def __init__(self, batch_size):
        self.detector = create_detector(DetectorConfig(engine="classical", batch_size=batch_size))
        self.name, self.batches = "classical", []

    def detect(self, images):
        self.batches.append([im.shape for im in images])
        return self.detector.detect(images)

    def close(self):
        self.detector.close()


def run_streams(names, out, batch_size, frames=30):
    streams = []
    for name in names:
        width, height = SIZES[name]
        scene = SyntheticSceneConfig(seed=list(SIZES).index(name) + 1, width=width, height=height, frames=frames)
        source = SyntheticSource(scene, stream_id=name)
        streams.append(Stream(source, create_tracker(stream_id=name), [MotTrackWriter(out / f"{name}.txt")]))
    detector = BatchRecorder(batch_size)
    stats = MultiStreamRunner(streams, detector, batch_size=batch_size, max_wait_ms=20, queue_size=8).run()
    return stats, detector


def test_batched_streams_give_the_same_tracks_as_separate_runs(tmp_path):
    (tmp_path / "together").mkdir()
    stats, detector = run_streams(list(SIZES), tmp_path / "together", batch_size=3)
    assert not stats.errors and stats.frames == 90
    assert {name: s.frames for name, s in stats.streams.items()} == {"s0": 30, "s1": 30, "s2": 30}
    mixed = [b for b in detector.batches if len(set(b)) > 1]
    assert max(len(b) for b in detector.batches) == 3 and len(mixed) > len(detector.batches) // 2
    for name in SIZES:
        alone = tmp_path / f"alone-{name}"
        alone.mkdir()
        run_streams([name], alone, batch_size=1)
        text = (tmp_path / "together" / f"{name}.txt").read_text()
        assert text and text == (alone / f"{name}.txt").read_text(), name


def four_stream_config(path, out, frames=3000, max_frames=None):
    streams = [{"id": f"cam{i}", "kind": "synthetic", "max_frames": None if max_frames is None else max_frames[i],
                "synthetic": {"seed": i + 1, "width": 256, "height": 192, "frames": frames}} for i in range(4)]
    path.write_text(yaml.safe_dump({"name": "four", "streams": streams, "detector": {"batch_size": 4},
                                    "outputs": {"dir": str(out), "video": False}}))
    return path


@pytest.mark.slow
def test_sigterm_with_four_streams_flushes_every_output(tmp_path):
    out = tmp_path / "run"
    config = four_stream_config(tmp_path / "four.yaml", out)
    files = [out / f"cam{i}" / "detections.jsonl" for i in range(4)]
    returncode, stderr = sigterm_pipeline(["--config", str(config)], files, 30)
    assert returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == "SIGTERM"
    processed = [summary["streams"][f"cam{i}"]["frames"] for i in range(4)]
    assert all(30 <= n < 3000 for n in processed) and sum(processed) == summary["frames"]
    for i, n in enumerate(processed):
        lines = files[i].read_text().splitlines()
        assert [json.loads(line)["frame"] for line in lines] == list(range(1, n + 1))  # contiguous, all written
    assert f"cam0: {processed[0]} frames" in stderr  # the per-stream console line
    # Each interrupted tracks.txt equals a clean run over exactly the frames it had processed.
    reference = tmp_path / "reference"
    done = subprocess.run([sys.executable, str(REPO / "run_pipeline.py"), "--config",
                           str(four_stream_config(tmp_path / "ref.yaml", reference, max_frames=processed))],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for i in range(4):
        ours = (out / f"cam{i}" / "tracks.txt").read_text()
        assert ours and ours == (reference / f"cam{i}" / "tracks.txt").read_text(), f"cam{i}"
