"""Assemble a run from its config: open the source, detector, tracker and sinks, run, score, write summary.json."""
from __future__ import annotations

import json
import platform
import signal
import threading
import time
from pathlib import Path

import numpy as np

from engines import create_detector
from pipeline.config import PipelineConfig
from pipeline.errors import UserError
from pipeline.evaluation import evaluate_detections, evaluate_tracking, write_mot_rows
from pipeline.progress import ProgressLine
from pipeline.runner import Runner, RunStats
from pipeline.schema import to_dict
from pipeline.sinks.base import FrameResult, Sink
from pipeline.sinks.files import DetectionsJsonlWriter, MotTrackWriter
from pipeline.sinks.video import AnnotatedVideoWriter, LiveView
from pipeline.sources import Source, open_source
from trackers import create_tracker


class EvaluationCollector:
    """Keeps reported tracks and detection centres in memory for scoring against ground truth at the end."""

    def __init__(self):
        self.track_rows: list[np.ndarray] = []
        self.detection_centres: dict[int, np.ndarray] = {}

    def write(self, result: FrameResult) -> None:
        frame = result.frame.index + 1
        tracks = result.tracks.reported()
        if len(tracks):
            boxes = tracks.boxes.astype(np.float64)
            rows = np.column_stack([np.full(len(tracks), frame), tracks.ids, boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
            self.track_rows.append(rows)
        self.detection_centres[frame] = result.detections.centers.astype(np.float64)

    def close(self) -> None:
        pass

    def tracks(self) -> np.ndarray:
        return np.concatenate(self.track_rows) if self.track_rows else np.zeros((0, 6))


def prepare_run_dir(path: Path) -> Path:
    """Create the run folder and prove it is writable before any work starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"output directory {path} is not writable ({err.strerror or err}); "
                        "choose another with --out DIR") from None
    return path


def _machine() -> dict:
    import os

    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}


def score(ground_truth: np.ndarray, collector: EvaluationCollector, frames: int, match_distance_px: float) -> dict:
    """MOT metrics of the tracks and Pd/Fa of the detections, over the frames that were processed."""
    gt = ground_truth[ground_truth[:, 0] <= frames]
    metrics = evaluate_tracking(gt, collector.tracks(), match_distance_px=match_distance_px)
    metrics.update(evaluate_detections(gt, collector.detection_centres, match_distance_px=match_distance_px))
    return metrics


def _json_safe(value):
    """Undefined metrics (NaN, e.g. MOTA without ground truth) become null: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


class _SignalStop:
    """Turns SIGINT/SIGTERM into a graceful stop of the runner (only possible from the main thread)."""

    def __init__(self, runner: Runner):
        self.runner, self.received, self._previous = runner, None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.received = signal.Signals(signum)
        self.runner.stop()

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run(config: PipelineConfig, source: Source | None = None) -> tuple[dict, RunStats, signal.Signals | None]:
    """Run the pipeline described by ``config``; returns (summary, stats, the signal that stopped it or None).

    ``source`` replaces the configured one (benchmarks replay pre-rendered frames to time the runtime alone).
    """
    run_dir = prepare_run_dir(config.run_dir())
    detector = create_detector(config.detector)  # first: a bad weights file fails before anything is opened
    source = source if source is not None else open_source(config.source)
    tracker = create_tracker(config.tracker, stream_id=source.stream_id)
    sinks: list[Sink] = []
    try:
        if config.outputs.tracks:
            sinks.append(MotTrackWriter(run_dir / "tracks.txt"))
        if config.outputs.detections:
            sinks.append(DetectionsJsonlWriter(run_dir / "detections.jsonl"))
        if config.outputs.video:
            sinks.append(AnnotatedVideoWriter(run_dir / "annotated.mp4", source.fps, config.outputs.trail_length))
        if config.outputs.show:
            sinks.append(LiveView(config.outputs.trail_length))
    except BaseException:
        for sink in sinks:
            sink.close()
        source.close()
        raise
    ground_truth = source.ground_truth() if config.evaluation.enabled else None
    collector = EvaluationCollector() if ground_truth is not None else None
    if collector:
        sinks.append(collector)
        write_mot_rows(run_dir / "ground_truth.txt", ground_truth)
    total = source.num_frames if config.source.max_frames is None else min(
        config.source.max_frames, source.num_frames or config.source.max_frames)
    progress = ProgressLine(total, source.stream_id) if config.runner.progress else None
    runner = Runner(source, detector, tracker, sinks, queue_size=config.runner.queue_size,
                    batch_size=config.detector.batch_size, max_wait_ms=config.runner.max_wait_ms,
                    max_frames=config.source.max_frames,
                    on_progress=(lambda s: progress.update(s.frames, s.dropped)) if progress else None)
    started = time.time()
    with _SignalStop(runner) as signals:
        stats = runner.run()
    detector.close()
    if progress:
        progress.finish(stats.frames, stats.dropped)
    summary = {
        "run_dir": str(run_dir),
        "stream": source.stream_id,
        "started_unix": round(started, 3),
        "frames": stats.frames,
        "wall_s": round(stats.wall_s, 3),
        "fps": round(stats.fps, 2),
        "dropped_frames": stats.dropped,
        "latency_ms": stats.latency_ms(),
        "detector": getattr(detector, "name", type(detector).__name__),
        "stopped_by": signals.received.name if signals.received else ("error" if stats.errors else "end_of_source"),
        "errors": [str(err) for err in stats.errors],
        "metrics": score(ground_truth, collector, stats.frames, config.evaluation.match_distance_px)
        if collector and stats.frames else None,
        "machine": _machine(),
        "config": to_dict(config),
    }
    (run_dir / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    return summary, stats, signals.received
