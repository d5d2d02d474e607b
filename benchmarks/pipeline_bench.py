#!/usr/bin/env python3
"""Runtime overhead of the pipeline on the default 640x512 scene: everything but the detector and the tracker.

Frames are rendered once up front and replayed from memory so the synthetic scene's render time is not counted as
runtime overhead (it is reported separately as `stage_ms.synthesis`). Two runs through the real runner and sinks:
the null detector (no detections, so the tracker does nothing) gives the overhead; the default detector gives fps.
Usage: python benchmarks/pipeline_bench.py --json benchmarks/results/pipeline_bench.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import ReplaySource, machine  # noqa: E402
from pipeline.app import run  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from simulation import SyntheticScene  # noqa: E402


def timed_run(overrides: list[str], source: ReplaySource, out: Path) -> dict:
    config = load_config(None, overrides + [f"outputs.dir={out}", "runner.progress=false"])
    summary, stats, _ = run(config, source=source)
    assert not stats.errors, stats.errors
    ms = {k: float(np.mean(v) / 1e6) for k, v in stats.stage_ns.items()}
    wall_ms = 1e3 * stats.wall_s / stats.frames
    return {"wall_ms_per_frame": wall_ms, "fps": stats.fps, "mean_stage_ms": ms,
            "overhead_ms_per_frame": wall_ms - ms["detect"] - ms["track"], "latency_ms": summary["latency_ms"],
            "metrics": summary["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting; the median is reported")
    args = parser.parse_args()

    config = load_config()
    scene = SyntheticScene(config.source.synthetic)
    t0 = time.perf_counter()
    frames = [scene.frame(i) for i in range(len(scene))]
    synthesis_ms = 1e3 * (time.perf_counter() - t0) / len(frames)
    source = ReplaySource("synthetic", frames, len(frames), ground_truth=scene.ground_truth())

    settings = {"null_detector": ["detector.engine='null'"],
                "null_detector_no_video": ["detector.engine='null'", "outputs.video=false"],
                "default_detector": []}
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in settings.items():
            results = [timed_run(overrides, source, Path(tmp) / name) for _ in range(args.repeats)]
            results.sort(key=lambda r: r["wall_ms_per_frame"])
            runs[name] = results[len(results) // 2]
            print(f"{name}: {runs[name]['wall_ms_per_frame']:.2f} ms/frame, {runs[name]['fps']:.1f} fps, "
                  f"overhead {runs[name]['overhead_ms_per_frame']:.2f} ms/frame")

    default = runs["default_detector"]
    result = {
        "overhead_ms_per_frame": round(runs["null_detector"]["overhead_ms_per_frame"], 3),
        "overhead_ms_per_frame_no_video": round(runs["null_detector_no_video"]["overhead_ms_per_frame"], 3),
        "fps_default": round(default["fps"], 2),
        "stage_ms": {**{k: round(v, 3) for k, v in default["mean_stage_ms"].items()},
                     "synthesis": round(synthesis_ms, 3)},
        "frames": len(frames),
        "frame_size": list(frames[0].shape[::-1]),
        "default_metrics": default["metrics"],
        "runs": runs,
        "machine": machine(("opencv-python-headless", "onnxruntime")),
        "command": "python benchmarks/pipeline_bench.py --json " + args.json,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("overhead_ms_per_frame", "overhead_ms_per_frame_no_video",
                                             "fps_default", "stage_ms")}, indent=2))


if __name__ == "__main__":
    main()
