"""The pipeline's config: YAML validated into typed sections, with `--set key.path=value` overrides."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

import yaml

from engines.config import DetectorConfig
from pipeline.errors import ConfigError, UserError
from pipeline.schema import build, option, require
from pipeline.sinks.network import bad_address, parse_address
from pipeline.sources import SourceConfig
from trackers.config import TrackerConfig

T = TypeVar("T")

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pipeline" / "default.yaml"


@dataclass
class RunnerConfig:
    queue_size: int = option(8, "frames held between stages; replay waits when full, live drops the oldest")
    max_wait_ms: float = option(2.0, "how long the detector waits to fill a batch of detector.batch_size frames")
    progress: bool = option(True, "show frames, fps and ETA on the console")
    max_duration_s: float | None = option(None, "stop the run after this many seconds, as a signal would (every "
                                                "output flushed); null: until the sources end or a signal")

    def __post_init__(self):
        require(self.queue_size >= 1, "queue_size", "must be at least 1")
        require(self.max_wait_ms >= 0, "max_wait_ms", "must be >= 0")
        require(self.max_duration_s is None or self.max_duration_s > 0, "max_duration_s", "must be > 0 s or null")


def _require_address(address: str | None, key: str) -> None:
    require(address is None or parse_address(address) is not None, key, bad_address(address))


@dataclass
class UdpOutputConfig:
    address: str | None = option(None, "send each frame's track report as JSON datagrams to HOST:PORT (schema: "
                                       "pipeline/sinks/network.py); null: off")
    max_datagram_bytes: int = option(8192, "split a report with many tracks across datagrams of at most this many "
                                           "bytes (under 1472 avoids IP fragmentation on Ethernet)")

    def __post_init__(self):
        _require_address(self.address, "address")
        require(1024 <= self.max_datagram_bytes <= 65507, "max_datagram_bytes",
                f"must be 1024..65507 bytes, got {self.max_datagram_bytes}")


@dataclass
class MqttOutputConfig:
    broker: str | None = option(None, "publish each frame's track report (JSON, same schema as UDP) to the MQTT "
                                      "broker at HOST:PORT; null: off")
    topic: str = option("irst/{stream}/tracks", "topic of the reports; {stream} becomes the stream id")
    qos: Literal[0, 1] = option(0, "0: at most once (lowest latency); 1: at least once, the broker acknowledges")
    max_queued: int = option(100, "reports not yet taken by the broker beyond which new ones are dropped and counted")

    def __post_init__(self):
        _require_address(self.broker, "broker")
        require(self.max_queued >= 1, "max_queued", f"must be at least 1, got {self.max_queued}")


@dataclass
class OutputConfig:
    dir: str | None = option(None, "run folder for all outputs (null: runs/<name>)")
    tracks: bool = option(True, "write tracks.txt (MOTChallenge: frame,id,x,y,w,h,score,-1,-1,-1; confirmed tracks)")
    detections: bool = option(True, "write detections.jsonl (one JSON line per frame)")
    video: bool = option(True, "write annotated.mp4 (detections, track ids, trails)")
    trail_length: int = option(30, "frames of history drawn behind each track")
    show: bool = option(False, "show the annotated frames in a window (needs an OpenCV build with GUI)")
    udp: UdpOutputConfig = option(UdpOutputConfig(), "track reports as UDP datagrams")
    mqtt: MqttOutputConfig = option(MqttOutputConfig(), "track reports through an MQTT broker")
    gstreamer: str | None = option(None, "re-publish the annotated video through this GStreamer pipeline, which "
                                         "starts with appsrc, e.g. 'appsrc ! videoconvert ! jpegenc ! rtpjpegpay ! "
                                         "udpsink host=127.0.0.1 port=5000' (RTP/JPEG)")

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
    streams: list[SourceConfig] = option(
        [], "several streams at once, each a source section with a unique id (replaces `source` when given): one "
            "detector batches frames across them; each has its own tracker and outputs in <run dir>/<id>/")
    detector: DetectorConfig = option(DetectorConfig(), "the detector engine")
    tracker: TrackerConfig = option(TrackerConfig(), "the multi-target tracker")
    runner: RunnerConfig = option(RunnerConfig(), "threads and queues")
    outputs: OutputConfig = option(OutputConfig(), "files written for each run")
    evaluation: EvaluationConfig = option(EvaluationConfig(), "metrics in summary.json")

    def __post_init__(self):
        ids = [s.id for s in self.streams]
        require(len(ids) < 2 or (None not in ids and len(set(ids)) == len(ids)), "streams",
                f"with several streams, each needs its own id (got {ids}); e.g. streams: [{{id: cam0, ...}}, ...]")

    def sources(self) -> list[SourceConfig]:
        """The stream sections to open: `streams`, or the single `source`."""
        return self.streams or [self.source]

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


def _anchor_weights(data: dict, folder: Path) -> None:
    """A relative detector.weights written in a config file names a file beside the config (so the default config
    finds weights/ from any working directory); --weights and --set stay relative to the working directory."""
    detector = data.get("detector")
    if isinstance(detector, dict) and isinstance(detector.get("weights"), str):
        weights = Path(detector["weights"]).expanduser()
        if not weights.is_absolute():
            detector["weights"] = str((folder / weights).resolve())


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> PipelineConfig:
    return load_config_file(PipelineConfig, Path(path) if path else DEFAULT_CONFIG, overrides, "config",
                            "source, detector, tracker", prepare=_anchor_weights)


def read_yaml_file(path: Path, what: str) -> Any:
    """The YAML in ``path``; a missing file or bad YAML is one UserError naming ``what`` and the file."""
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{what} file {path} is not valid YAML: {err}") from None


def load_config_file(cls: type[T], path: Path, overrides: list[str], what: str, sections: str,
                     prepare: Callable[[dict, Path], None] | None = None) -> T:
    """A typed config ``cls`` from a YAML file of sections, ``prepare(data, folder)`` (e.g. paths relative to the
    file), then `key.path=value` overrides; every error names the key path and the file (run_pipeline and train.py)."""
    data = read_yaml_file(path, what) or {}
    if not isinstance(data, dict):
        raise UserError(f"{what} file {path} must hold a mapping of sections ({sections}, ...)")
    if prepare is not None:
        prepare(data, path.parent)
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return build(cls, data)
    except ConfigError as err:
        raise ConfigError(err.path, f"{err.message} (in {path})") from None
