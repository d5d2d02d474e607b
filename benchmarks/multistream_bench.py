#!/usr/bin/env python3
"""Several 640x512 synthetic IR streams through one detector: throughput and latency, batched vs unbatched, and
memory over a long replay.

For 1, 2, 4 and 8 streams, each run through the real pipeline (runner, detector, one tracker per stream, track
and detection files; no video) twice: unbatched (detector.batch_size 1) and batched (batch_size = streams,
runner.max_wait_ms 5). Two measurements each:
  throughput  every stream replays --frames pre-rendered frames as fast as the pipeline takes them (no drops):
              aggregate frames/s over all streams.
  latency     every stream is a live camera at --fps for --paced-seconds (the oldest frame is dropped when the
              pipeline falls behind): p50/p99 end-to-end latency (frame read -> every output written), the
              frames/s reached and the share of frames dropped.
Soak: 4 streams replaying in a loop for --soak-minutes; resident memory (RSS) at a tenth of the run (1 minute of
a 10-minute run) against the end. Frames are rendered once up front so scene synthesis is not timed.
Usage: python benchmarks/multistream_bench.py --json benchmarks/results/multistream_bench.json [--soak-minutes 10]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import ReplaySource, machine  # noqa: E402
from pipeline.app import run  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from simulation import SyntheticScene, SyntheticSceneConfig  # noqa: E402

STREAM_COUNTS = (1, 2, 4, 8)


def pipeline_run(overrides: list[str], streams: list[ReplaySource], out: Path, seconds: float | None = None):
    """The real pipeline over ``streams``; endless (live) ones are stopped after ``seconds``, outputs flushed."""
    limit = [f"runner.max_duration_s={seconds}"] if seconds else []
    config = load_config(None, overrides + limit + [f"outputs.dir={out}", "runner.progress=false",
                                                    "outputs.video=false", "evaluation.enabled=false"])
    summary, stats, _ = run(config, source=streams)
    assert not stats.errors, stats.errors
    return summary, stats


def latency_ms(stats, percentile: float) -> float:
    return round(float(np.percentile(np.asarray(stats.stage_ns["end_to_end"]) / 1e6, percentile)), 2)


def measure(count: int, batched: bool, rendered: list[list[np.ndarray]], args, base: list[str], tmp: Path) -> dict:
    overrides = base + [f"detector.batch_size={count if batched else 1}", "runner.max_wait_ms=5"]
    replay = [ReplaySource(f"s{i}", rendered[i], args.frames) for i in range(count)]
    _, stats = pipeline_run(overrides, replay, tmp / f"replay-{count}-{batched}")
    live = [ReplaySource(f"s{i}", rendered[i], None, fps=args.fps) for i in range(count)]
    _, paced = pipeline_run(overrides, live, tmp / f"live-{count}-{batched}", seconds=args.paced_seconds)
    offered = paced.frames + paced.dropped
    return {"aggregate_fps": round(stats.fps, 1), "replay_latency_ms_p99": latency_ms(stats, 99),
            "live_fps": round(paced.fps, 1), "live_latency_ms_p50": latency_ms(paced, 50),
            "live_latency_ms_p99": latency_ms(paced, 99),
            "live_dropped_share": round(paced.dropped / offered, 4) if offered else None}


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def soak(rendered: list[list[np.ndarray]], minutes: float, base: list[str], tmp: Path) -> dict:
    """4 streams replaying in a loop for ``minutes``; RSS sampled every second."""
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    t0 = time.monotonic()

    def sample():
        while not done.wait(1.0):
            samples.append((time.monotonic() - t0, rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    streams = [ReplaySource(f"s{i}", rendered[i], None) for i in range(4)]
    _, stats = pipeline_run(base + ["detector.batch_size=4"], streams, tmp / "soak", seconds=minutes * 60)
    done.set()
    sampler.join()
    early = next(rss for t, rss in samples if t >= minutes * 6)  # a tenth of the run: 1 minute of 10
    return {"minutes": minutes, "frames": stats.frames, "fps": round(stats.fps, 1),
            "rss_mb_at_tenth": round(early, 1), "rss_mb_at_end": round(samples[-1][1], 1),
            "rss_growth_mb": round(samples[-1][1] - early, 1), "rss_samples_mb": [round(r, 1) for _, r in samples]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--frames", type=int, default=150, help="frames per stream in the throughput runs")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of each live stream in the latency runs")
    parser.add_argument("--paced-seconds", type=float, default=5.0, help="length of each latency run (s)")
    parser.add_argument("--soak-minutes", type=float, default=1.0,
                        help="length of the memory soak (10 for the 10-minute figure; 0 skips it)")
    parser.add_argument("--engine", default="auto", help="detector.engine (auto, classical, onnxruntime, null)")
    parser.add_argument("--weights", help="detector.weights (ONNX) for --engine onnxruntime")
    args = parser.parse_args()

    base = [f"detector.engine='{args.engine}'"] + ([f"detector.weights='{args.weights}'"] if args.weights else [])
    rendered = []
    for seed in range(max(STREAM_COUNTS)):
        scene = SyntheticScene(SyntheticSceneConfig(seed=seed + 1, width=640, height=512, frames=60))
        rendered.append([scene.frame(i) for i in range(len(scene))])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in STREAM_COUNTS:
            for batched in (False, True):
                key = f"{count}_streams_{'batched' if batched else 'unbatched'}"
                results[key] = measure(count, batched, rendered, args, base, Path(tmp))
                print(key, json.dumps(results[key]), flush=True)
        soak_result = soak(rendered, args.soak_minutes, base, Path(tmp)) if args.soak_minutes > 0 else None
    if soak_result:
        print("soak", json.dumps({k: v for k, v in soak_result.items() if k != "rss_samples_mb"}), flush=True)
    command = " ".join(["python benchmarks/multistream_bench.py"] + sys.argv[1:])
    output = {"runs": results, "soak": soak_result, "frame_size": [640, 512], "frames_per_stream": args.frames,
              "live_fps_per_stream": args.fps, "paced_seconds": args.paced_seconds, "engine": args.engine,
              "machine": machine(("opencv-python-headless", "onnxruntime")), "command": command}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(output, indent=2) + "\n")


if __name__ == "__main__":
    main()
