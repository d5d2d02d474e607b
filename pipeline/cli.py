"""`python run_pipeline.py`: the command line of the pipeline. User mistakes print one message and exit non-zero."""
from __future__ import annotations

import argparse
import logging
import sys
import traceback

from pipeline.config import DEFAULT_CONFIG, PipelineConfig, load_config
from pipeline.errors import UserError
from pipeline.schema import describe

EXIT_USER_ERROR = 2
EXIT_RUN_ERROR = 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_pipeline.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Detect and track small infrared targets: source -> detector -> tracker -> outputs.\n"
                    "With no arguments it runs configs/pipeline/default.yaml on the built-in synthetic scene.\n"
                    "Outputs in runs/<name>/: tracks.txt, detections.jsonl, annotated.mp4, summary.json.",
        epilog="config options (set in the YAML file or with --set KEY=VALUE):\n" + "\n".join(describe(PipelineConfig)),
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="pipeline YAML (default: %(default)s)")
    p.add_argument("--source", help="video file, image folder, MOTChallenge sequence folder, stream URL (rtsp://, "
                                    "http://, ...), V4L2 camera (/dev/video0) or GStreamer pipeline ending in "
                                    "appsink (sets source.kind=auto and source.path), or 'synthetic'")
    p.add_argument("--weights", help="detector ONNX file (sets detector.weights)")
    p.add_argument("--engine", help="detector backend (sets detector.engine): auto, classical, onnxruntime, tensorrt, "
                                    "torch, null")
    p.add_argument("--out", help="run folder for the outputs (sets outputs.dir)")
    p.add_argument("--show", action="store_true", help="show annotated frames in a window (sets outputs.show=true)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config option, e.g. --set tracker.max_misses=5 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the validated config as YAML and exit")
    return p


def shortcut_overrides(args: argparse.Namespace) -> list[str]:
    overrides = []
    if args.source == "synthetic":
        overrides.append("source.kind=synthetic")
    elif args.source:
        overrides += ["source.kind=auto", f"source.path={args.source!s}"]
    if args.weights:
        overrides.append(f"detector.weights={args.weights}")
    if args.engine:
        overrides.append(f"detector.engine={args.engine}")
    if args.out:
        overrides.append(f"outputs.dir={args.out}")
    if args.show:
        overrides.append("outputs.show=true")
    return overrides


def _quoted(assignment: str) -> str:
    """Shortcut values stay strings even where YAML would read them otherwise (a path '2024', the engine 'null')."""
    key, _, value = assignment.partition("=")
    if key in ("source.path", "detector.weights", "detector.engine", "outputs.dir"):
        return f"{key}='{value.replace(chr(39), chr(39) * 2)}'"
    return assignment


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Stream outages, skipped frames and unreachable receivers are reported as they happen, one line each.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        config = load_config(args.config, [_quoted(o) for o in shortcut_overrides(args)] + args.overrides)
        if args.print_config:
            import yaml

            from pipeline.schema import to_dict

            print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
            return 0
        from pipeline.app import run

        summary, stats, received = run(config)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(_report(summary), file=sys.stderr)
    user_errors = [e for e in stats.errors if isinstance(e, UserError)]
    for err in user_errors:
        print(f"error: {err}", file=sys.stderr)
    for err in (e for e in stats.errors if not isinstance(e, UserError)):
        traceback.print_exception(err)
    if received is not None:
        print(f"stopped by {received.name} after {stats.frames} frames; outputs flushed in {summary['run_dir']}",
              file=sys.stderr)
        return 128 + int(received)
    if user_errors and len(user_errors) == len(stats.errors):
        return EXIT_USER_ERROR
    return EXIT_RUN_ERROR if stats.errors else 0


def _report(summary: dict) -> str:
    lines = [f"{summary['frames']} frames in {summary['wall_s']:.1f} s ({summary['fps']:.1f} fps), "
             f"dropped {summary['dropped_frames']}; outputs in {summary['run_dir']}"]
    lat = summary["latency_ms"]
    if lat:
        lines.append("latency ms p50/p95: " + ", ".join(f"{k} {v['p50']:.2f}/{v['p95']:.2f}" for k, v in lat.items()))
    for name, stream in summary["streams"].items():  # one line per stream when there are several or news
        parts = [f"{stream['frames']} frames ({stream['fps']:.1f} fps)", f"dropped {stream['dropped_frames']}"]
        if "end_to_end" in stream["latency_ms"]:
            e2e = stream["latency_ms"]["end_to_end"]
            parts.append(f"end-to-end p50/p95 {e2e['p50']:.1f}/{e2e['p95']:.1f} ms")
        notes = [f"{len(stream['outages'])} outages"] if stream["outages"] else []
        notes += [f"skipped {sum(stream['skipped_frames'].values())}"] if stream["skipped_frames"] else []
        notes += [f"{kind} dropped {c['dropped']} of {c['sent'] + c['dropped']}"
                  for kind, c in stream["outputs"].items() if c["dropped"]]
        if len(summary["streams"]) > 1 or notes:
            lines.append(f"  {name}: " + ", ".join(parts + notes))
    metrics = summary.get("metrics")
    if metrics:
        lines.append("vs ground truth: " + ", ".join(
            f"{k} {metrics[k]:.3f}" for k in ("MOTA", "IDF1", "HOTA", "pd", "false_alarms_per_frame") if k in metrics))
    return "\n".join(lines)
