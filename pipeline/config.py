"""The pipeline's config: YAML validated into typed sections, with `--set key.path=value` overrides."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from engines.config import DetectorConfig
from pipeline.errors import ConfigError, UserError
from pipeline.schema import build, option, require
from pipeline.sources import SourceConfig
from trackers.config import TrackerConfig

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pipeline" / "default.yaml"


@dataclass
class RunnerConfig:
    queue_size: int = option(8, "frames held between stages; replay waits when full, live drops the oldest")
    max_wait_ms: float = option(2.0, "how long the detector waits to fill a batch of detector.batch_size frames")
    progress: bool = option(True, "show frames, fps and ETA on the console")

    def __post_init__(self):
        require(self.queue_size >= 1, "queue_size", "must be at least 1")
        require(self.max_wait_ms >= 0, "max_wait_ms", "must be >= 0")


@dataclass
class OutputConfig:
    dir: str | None = option(None, "run folder for all outputs (null: runs/<name>)")
    tracks: bool = option(True, "write tracks.txt (MOTChallenge: frame,id,x,y,w,h,score,-1,-1,-1; confirmed tracks)")
    detections: bool = option(True, "write detections.jsonl (one JSON line per frame)")
    video: bool = option(True, "write annotated.mp4 (detections, track ids, trails)")
    trail_length: int = option(30, "frames of history drawn behind each track")
    show: bool = option(False, "show the annotated frames in a window (needs an OpenCV build with GUI)")

    def __post_init__(self):
        require(self.trail_length >= 0, "trail_length", "must be >= 0")


@dataclass
class EvaluationConfig:
    enabled: bool = option(True, "score tracks and detections against the source's ground truth, when it has one")
    match_distance_px: float = option(5.0, "centre distance (px) under which a track or detection matches a target")

    def __post_init__(self):
        require(self.match_distance_px > 0, "match_distance_px", "must be > 0 pixels")


@dataclass
class PipelineConfig:
    name: str = option("default", "run name: outputs go to runs/<name> unless outputs.dir is set")
    source: SourceConfig = option(SourceConfig(), "where frames come from")
    detector: DetectorConfig = option(DetectorConfig(), "the detector engine")
    tracker: TrackerConfig = option(TrackerConfig(), "the multi-target tracker")
    runner: RunnerConfig = option(RunnerConfig(), "threads and queues")
    outputs: OutputConfig = option(OutputConfig(), "files written for each run")
    evaluation: EvaluationConfig = option(EvaluationConfig(), "metrics in summary.json")

    def run_dir(self) -> Path:
        return Path(self.outputs.dir) if self.outputs.dir else Path("runs") / self.name


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `key.path=value` to raw config data; the value is read as YAML (numbers, booleans, lists, null)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key:
        raise UserError(f"--set expects KEY=VALUE (e.g. tracker.max_misses=5), got {assignment!r}")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError as err:
        raise UserError(f"--set {assignment!r}: the value is not valid YAML ({err})") from None
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts[:depth + 1]), f"is a value, not a section; cannot set {key}")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> PipelineConfig:
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of sections (source, detector, tracker, ...)")
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return build(PipelineConfig, data)
    except ConfigError as err:
        raise ConfigError(err.path, f"{err.message} (in {path})") from None
