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
from pipeline.runner import MultiStreamRunner, RunStats, Stream
from pipeline.schema import to_dict
from pipeline.sinks.base import FrameResult, Sink
from pipeline.sinks.files import DetectionsJsonlWriter, MotTrackWriter
from pipeline.sinks.network import MqttTrackReporter, TrackReportEncoder, UdpTrackReporter
from pipeline.sinks.video import AnnotatedVideoWriter, LiveView, TrackRenderer
from pipeline.sources import Source, open_source
from trackers import create_tracker


class EvaluationCollector:
    """Keeps reported tracks and detection centres in memory for scoring against ground truth at the end."""

    def __init__(self, ground_truth: np.ndarray):
        self.ground_truth = ground_truth
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


def score(collector: EvaluationCollector, frames: int, match_distance_px: float) -> dict:
    """MOT metrics of the tracks and Pd/Fa of the detections, over the frames that were processed."""
    gt = collector.ground_truth[collector.ground_truth[:, 0] <= frames]
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

    def __init__(self, runner: MultiStreamRunner):
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


def open_outputs(config: PipelineConfig, source: Source, out_dir: Path
                 ) -> tuple[list[Sink], EvaluationCollector | None]:
    """The sinks of one stream (files in ``out_dir``, network reports, re-publishing) and its evaluation collector."""
    outputs = config.outputs
    sinks: list[Sink] = []
    # Shared by the outputs of the stream: each frame is drawn once, and its track report built once.
    renderer, reports = TrackRenderer(outputs.trail_length), TrackReportEncoder()
    try:
        if outputs.tracks:
            sinks.append(MotTrackWriter(out_dir / "tracks.txt"))
        if outputs.detections:
            sinks.append(DetectionsJsonlWriter(out_dir / "detections.jsonl"))
        if outputs.video:
            sinks.append(AnnotatedVideoWriter(out_dir / "annotated.mp4", source.fps, renderer))
        if outputs.show:
            sinks.append(LiveView(renderer))
        if outputs.udp.address:
            sinks.append(UdpTrackReporter(outputs.udp.address, outputs.udp.max_datagram_bytes, reports))
        if outputs.mqtt.broker:
            sinks.append(MqttTrackReporter(outputs.mqtt.broker, source.stream_id, outputs.mqtt.topic,
                                           outputs.mqtt.qos, outputs.mqtt.max_queued, encoder=reports))
        if outputs.gstreamer:
            from pipeline.sinks.gstreamer import GStreamerVideoPublisher

            sinks.append(GStreamerVideoPublisher(outputs.gstreamer, source.fps, renderer, source.live))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    ground_truth = source.ground_truth() if config.evaluation.enabled else None
    if ground_truth is None:
        return sinks, None
    write_mot_rows(out_dir / "ground_truth.txt", ground_truth)
    collector = EvaluationCollector(ground_truth)
    return sinks + [collector], collector


def open_sources(config: PipelineConfig) -> list[Source]:
    """Every configured stream's source; those already open are closed when a later one fails."""
    sources: list[Source] = []
    try:
        for section in config.sources():
            sources.append(open_source(section))
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources


def _sink_counters(sinks: list[Sink]) -> dict:
    """Delivery counters of the network outputs (reports sent and dropped), by output type."""
    return {type(s).__name__: {"sent": s.sent, "dropped": s.dropped} for s in sinks if hasattr(s, "dropped")}


def stream_summary(stats: RunStats, source: Source, sinks: list[Sink], collector: EvaluationCollector | None,
                   config: PipelineConfig, out_dir: Path) -> dict:
    return {
        "out_dir": str(out_dir),
        "frames": stats.frames,
        "fps": round(stats.fps, 2),
        "dropped_frames": stats.dropped,
        "skipped_frames": dict(stats.skipped),
        "latency_ms": stats.latency_ms(),
        "outages": getattr(source, "outages", []),
        "outputs": _sink_counters(sinks),
        "errors": [str(err) for err in stats.errors],
        "metrics": score(collector, stats.frames, config.evaluation.match_distance_px)
        if collector and stats.frames else None,
    }


def _expected_frames(source: Source, max_frames: int | None) -> int | None:
    counts = [n for n in (max_frames, source.num_frames) if n is not None]
    return min(counts) if counts else None


def run(config: PipelineConfig, source: Source | list[Source] | None = None
        ) -> tuple[dict, RunStats, signal.Signals | None]:
    """Run the pipeline described by ``config``; returns (summary, stats, the signal that stopped it or None).

    ``source`` (one or a list) replaces the configured streams (benchmarks replay pre-rendered frames to time the
    runtime alone); each then ends at `source.max_frames`.
    """
    run_dir = prepare_run_dir(config.run_dir())
    detector = create_detector(config.detector)  # first: a bad weights file fails before anything is opened
    if source is None:
        sources, sections = open_sources(config), config.sources()
    else:
        sources = source if isinstance(source, list) else [source]
        sections = [config.source] * len(sources)
    multi = len(sources) > 1
    streams, collectors, out_dirs = [], [], []
    try:
        for src, section in zip(sources, sections):
            out_dir = prepare_run_dir(run_dir / src.stream_id) if multi else run_dir
            sinks, collector = open_outputs(config, src, out_dir)
            tracker = create_tracker(config.tracker, stream_id=src.stream_id)
            streams.append(Stream(src, tracker, sinks, max_frames=section.max_frames))
            collectors.append(collector)
            out_dirs.append(out_dir)
    except BaseException:
        for stream in streams:
            for sink in stream.sinks:
                sink.close()
        for src in sources:
            src.close()
        raise
    totals = [_expected_frames(s.source, s.max_frames) for s in streams]
    label = sources[0].stream_id if not multi else f"{len(sources)} streams"
    progress = ProgressLine(None if None in totals else sum(totals), label) if config.runner.progress else None
    runner = MultiStreamRunner(streams, detector, queue_size=config.runner.queue_size,
                               batch_size=config.detector.batch_size, max_wait_ms=config.runner.max_wait_ms,
                               max_duration_s=config.runner.max_duration_s,
                               on_progress=(lambda s: progress.update(s.frames, s.dropped)) if progress else None)
    started = time.time()
    with _SignalStop(runner) as signals:
        stats = runner.run()
    detector.close()
    if progress:
        progress.finish(stats.frames, stats.dropped)
    per_stream = {s.source.stream_id: stream_summary(stats.streams[s.source.stream_id], s.source, s.sinks, c,
                                                     config, d)
                  for s, c, d in zip(streams, collectors, out_dirs)}
    first = per_stream[sources[0].stream_id]
    summary = {
        "run_dir": str(run_dir),
        "stream": sources[0].stream_id if not multi else None,
        "started_unix": round(started, 3),
        "frames": stats.frames,
        "wall_s": round(stats.wall_s, 3),
        "fps": round(stats.fps, 2),
        "dropped_frames": stats.dropped,
        "skipped_frames": dict(stats.skipped),
        "latency_ms": stats.latency_ms(),
        "detector": getattr(detector, "name", type(detector).__name__),
        "batch_size": config.detector.batch_size,
        "stopped_by": signals.received.name if signals.received else (
            "error" if stats.errors else "max_duration" if runner.timed_out else "end_of_source"),
        "errors": [str(err) for err in stats.errors],
        "metrics": first["metrics"] if not multi else None,
        "streams": per_stream,
        "machine": _machine(),
        "config": to_dict(config),
    }
    (run_dir / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    return summary, stats, signals.received
