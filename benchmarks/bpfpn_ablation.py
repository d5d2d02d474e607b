#!/usr/bin/env python3
"""BP-FPN ablation on the Halmstad validation clips: does each part (GILS, its detach, DGR, k previous frames) help?

Every variant is bpfpn_tiny (configs/models/bpfpn_tiny.yaml) with its neck switches and input.previous_frames
changed, trained by the project's trainer (configs/train/bpfpn_halmstad_cpu.yaml) for the same epochs with
the same seed and batch order, without validation (the last checkpoint is scored, so the val clips
choose nothing). Each is then run on every frame of the 26 val clips (never trained on), its previous frames
taken from the clip as the engine's frame buffer does, and scored:

- AP50: COCO-style average precision at IoU 0.5 (101-point interpolation, greedy matching by score) over all
  frames, pipeline boxes (x, y, w, h as gt.txt);
- Pd at fixed false-alarm rates (0.1, 0.5 and 1 per frame) by 3 px centroid distance, from a sweep of score
  thresholds;
- the tracker's MOTA / IDF1 / HOTA downstream (the pipeline's tracker with its defaults, fed the detections at
  the score threshold that gives 0.5 false alarms per frame on the val clips);
- params, FLOPs (from the exported ONNX at 320x256) and CPU latency (ONNX Runtime, batch 1, median of repeats).

Training runs land in runs/bpfpn_ablation/<variant>/ and are reused: a finished one is only scored, an unfinished
one resumed, and its scores are kept beside it (scores.json) until its last.pt changes. Variants can be trained and
scored in several processes (--variants, --scores-only); latency is timed last, for all variants in one process.

    python benchmarks/bpfpn_ablation.py --json benchmarks/results/bpfpn_ablation.json
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import latencies_ms, machine  # noqa: E402
from models.export import export_onnx  # noqa: E402
from pipeline.evaluation.tracking import evaluate_tracking  # noqa: E402
from pipeline.types import Detections  # noqa: E402
from trackers import TrackerConfig, create_tracker  # noqa: E402
from training.checkpoint import read_checkpoint  # noqa: E402
from training.cli import load_trained_detector  # noqa: E402
from training.coco_eval import coco_average_precision  # noqa: E402
from training.config import TrainConfig, load_train_config  # noqa: E402
from training.evaluate import detector_candidates, predict  # noqa: E402
from training.splits import ClipKeyFrames, KeepRatioTestSet  # noqa: E402
from training.sequences import ClipSequences, read_clip_split  # noqa: E402
from training.voc_eval import pd_fa  # noqa: E402

TRAIN_CONFIG = REPO / "configs" / "train" / "bpfpn_halmstad_cpu.yaml"
MODEL_CONFIG = REPO / "configs" / "models" / "bpfpn_tiny.yaml"
NECKS = {  # neck overrides of bpfpn_tiny.yaml (GILS on with detach, DGR 0.1)
    "fpn": {"gils": {"enabled": False}, "dgr": {"weight": 0.0}},
    "gils": {"dgr": {"weight": 0.0}},
    "gils_nodetach": {"gils": {"detach": False}, "dgr": {"weight": 0.0}},
    "dgr": {"gils": {"enabled": False}},
    "gils_dgr": {},
}
FALSE_ALARM_RATES = (0.1, 0.5, 1.0)  # per frame: the operating points Pd is compared at
TRACKING_FALSE_ALARMS = 0.5          # the tracker gets each variant's detections at this false-alarm rate
THRESHOLDS = np.round(np.arange(0.02, 0.62, 0.02), 2)
CENTROID_PX = 3.0                    # Pd / Fa: the usual SIRST centroid criterion (as densesirst_eval.py)
TRACK_MATCH_PX = 5.0                 # tracker metrics: as benchmarks/tracker_bench.py
LATENCY_RUNS = 200


def variant_names(frames: int) -> list[str]:
    return [f"{neck}_k{k}" for k in (0, frames) for neck in NECKS]


def parse_variant(name: str) -> tuple[str, int, int] | None:
    """'<neck>_k<frames>[_s<seed>]' -> (neck, k, seed); None for anything else."""
    match = re.fullmatch(r"(\w+?)_k(\d+)(?:_s(\d+))?", name)
    if match is None or match[1] not in NECKS:
        return None
    return match[1], int(match[2]), int(match[3] or 0)


def model_config(variant: str) -> dict:
    """bpfpn_tiny's config with the variant's neck switches and previous frames."""
    neck, k, _ = parse_variant(variant)
    config = yaml.safe_load(MODEL_CONFIG.read_text())
    config["name"] = f"bpfpn_tiny_{variant}"
    config["input"]["previous_frames"] = k
    for part, values in NECKS[neck].items():
        config["neck"][part].update(values)
    return config


def train_config(variant: str, run_dir: Path, epochs: int) -> TrainConfig:
    """The Halmstad recipe cut to ``epochs`` (lr x0.1 for the last one), no validation, this variant's model."""
    model_path = run_dir / "model.yaml"
    run_dir.mkdir(parents=True, exist_ok=True)
    model_path.write_text(yaml.safe_dump(model_config(variant), sort_keys=False))
    return load_train_config(TRAIN_CONFIG, [
        f"name={variant}", f"model={model_path}", "data.val_split=null", f"schedule.epochs={epochs}",
        f"loop.seed={parse_variant(variant)[2]}",
        f"schedule.milestones=[{epochs - 1}]", f"output.dir={run_dir}"])


def trained(run_dir: Path) -> bool:
    last = run_dir / "last.pt"
    if not last.exists():
        return False
    contents = read_checkpoint(last)
    return contents["iteration"] >= contents["train_config"]["schedule"]["epochs"] * contents["iters_per_epoch"]


def train_variant(variant: str, run_dir: Path, epochs: int) -> TrainConfig:
    """Train (or finish training) ``variant`` into ``run_dir``; its config."""
    from training.loop import Trainer

    config = train_config(variant, run_dir, epochs)
    if not trained(run_dir):
        last = run_dir / "last.pt"
        print(f"training {variant}: {epochs} epochs into {run_dir}", file=sys.stderr)
        if Trainer(config, resume=last if last.exists() else None).run().interrupted:
            raise SystemExit(f"training {variant} was interrupted; run again to resume it")
    return config


# --- scoring ---------------------------------------------------------------------------------------------

def val_frames(config: TrainConfig, previous_frames: int, limit: int | None) -> KeepRatioTestSet:
    """Every frame of the val clips (not only the key frames; the first ``limit`` clips), each with its k previous
    frames."""
    clips = read_clip_split(config.data.clip_split_path)["val"][:limit]
    sequences = ClipSequences(config.data.clips_root_path, clips, previous_frames, step=1)
    return KeepRatioTestSet(ClipKeyFrames(sequences), size=tuple(config.data.input_size))


def operating_points(detections: list[Detections], gt: list[np.ndarray]) -> tuple[list[dict], dict]:
    """(Pd / false alarms per frame at every THRESHOLDS value, {rate: Pd at that false-alarm rate, interpolated
    linearly between the two sweep points around it}); a rate outside the sweep maps to None."""
    sweep = [pd_fa(detections, gt, score_threshold=float(t), match_distance_px=CENTROID_PX) for t in THRESHOLDS]
    points = [{"threshold": p["score_threshold"], "pd": round(p["pd"], 4),
               "false_alarms_per_frame": round(p["false_alarms_per_image"], 4)} for p in sweep]
    rates = np.array([p["false_alarms_per_image"] for p in sweep])[::-1]  # rising as the threshold falls
    pds = np.array([p["pd"] for p in sweep])[::-1]
    at_rate = {str(rate): round(float(np.interp(rate, rates, pds)), 4) if rates[0] <= rate <= rates[-1] else None
               for rate in FALSE_ALARM_RATES}
    return points, at_rate


def tracking_threshold(points: list[dict]) -> float | None:
    """The lowest sweep threshold with at most TRACKING_FALSE_ALARMS false alarms per frame."""
    within = [p["threshold"] for p in points if p["false_alarms_per_frame"] <= TRACKING_FALSE_ALARMS]
    return within[0] if within else None


def tracking_scores(test_set: KeepRatioTestSet, detections: list[Detections], threshold: float) -> dict:
    """MOTA / IDF1 / HOTA of the default tracker fed the detections scoring >= ``threshold``, all val clips as one
    sequence (frames and ids offset per clip)."""
    sequences = test_set.dataset.sequences
    gt_rows, pred_rows, offset = [], [], 0
    for clip_index, clip in enumerate(sequences.clips):
        tracker = create_tracker(TrackerConfig())
        frames = [i for i, (c, _) in enumerate(sequences.keys) if c == clip_index]
        for frame, index in enumerate(frames):
            found = detections[index]
            keep = found.scores >= threshold
            tracks = tracker.update(frame, Detections(found.boxes[keep], found.scores[keep])).reported()
            sizes = tracks.boxes[:, 2:] - tracks.boxes[:, :2]
            pred_rows.append(np.column_stack([np.full(len(tracks.ids), offset + frame + 1.0),
                                              tracks.ids + 1_000_000 * clip_index,
                                              tracks.states[:, :2] - sizes / 2, sizes]))
        gt = clip.ground_truth[:, :6].copy()
        gt[:, 0] += offset
        gt[:, 1] += 1_000_000 * clip_index
        gt_rows.append(gt)
        offset += len(frames)
    metrics = evaluate_tracking(np.concatenate(gt_rows), np.concatenate(pred_rows), TRACK_MATCH_PX)
    return {key: round(float(metrics[key]), 4) for key in ("MOTA", "IDF1", "HOTA")} | {
        "num_switches": int(metrics["num_switches"]), "score_threshold": threshold}


def cost(detector, onnx_path: Path, size: tuple[int, int]) -> dict:
    """Parameters, FLOPs per frame (from the ONNX it exports to ``onnx_path``) and ONNX Runtime latency at batch 1,
    ``size`` (w, h)."""
    import onnxruntime

    from engines.onnx_graph import count_macs

    path = export_onnx(detector, onnx_path)
    width, height = size
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((1, detector.frames, height, width), dtype=np.float32)
    times = latencies_ms(lambda _: session.run(None, {"images": images}), LATENCY_RUNS, warmup=10)
    training_only = detector.neck.regularizer
    return {"params": sum(p.numel() for p in detector.parameters()),
            "training_only_params": 0 if training_only is None else sum(p.numel() for p in training_only.parameters()),
            "gflops": round(2 * count_macs(path, height, width)["total"] / 1e9, 4),
            "latency_ms_p50": round(float(np.median(times)), 3),
            "latency_ms_p90": round(float(np.percentile(times, 90)), 3)}


def detection_scores(config: TrainConfig, checkpoint: Path, test_set: KeepRatioTestSet,
                     cache: Path | None = None) -> dict:
    """AP50, Pd at the FALSE_ALARM_RATES and the tracker's scores of ``checkpoint`` on ``test_set``, kept in
    ``cache`` (a JSON file) for as long as the checkpoint and the scored clips are the same."""
    key = {"checkpoint_mtime_ns": checkpoint.stat().st_mtime_ns, "frames": len(test_set)}
    if cache is not None and cache.exists() and (cached := json.loads(cache.read_text())).get("key") == key:
        return cached["scores"]
    detector, contents = load_trained_detector(config, str(checkpoint))
    detections = predict(detector_candidates(detector), test_set, batch_size=16, num_workers=0,
                         device=torch.device("cpu"), nms_iou=config.evaluation.nms_iou,
                         max_detections=config.evaluation.max_detections, label=f"scoring {config.name}")
    gt = [annotation.boxes for annotation in test_set.dataset.annotations]
    ap = coco_average_precision(detections, gt, iou_threshold=0.5)
    sweep, at_rate = operating_points(detections, gt)
    threshold = tracking_threshold(sweep)
    scores = {"iterations": contents.get("iteration"), "AP50": round(ap.ap, 4), "recall": round(ap.recall, 4),
              "pd_at_false_alarms_per_frame": at_rate,
              "tracking": None if threshold is None else tracking_scores(test_set, detections, threshold),
              "sweep": sweep}
    if cache is not None:
        cache.write_text(json.dumps({"key": key, "scores": scores}, indent=1) + "\n")
    return scores


def plot(results: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(results["variants"])
    rows = [results["variants"][n] for n in names]
    panels = [("AP50 (val clips, every frame)", [r["AP50"] for r in rows]),
              (f"Pd at {TRACKING_FALSE_ALARMS} false alarms/frame",
               [r["pd_at_false_alarms_per_frame"][str(TRACKING_FALSE_ALARMS)] or 0 for r in rows]),
              ("tracker IDF1", [(r["tracking"] or {"IDF1": 0})["IDF1"] for r in rows]),
              ("ONNX Runtime latency p50, ms", [r["latency_ms_p50"] for r in rows])]
    figure = Figure(figsize=(12, 7), layout="constrained")
    FigureCanvasAgg(figure)
    for index, (title, values) in enumerate(panels):
        axes = figure.add_subplot(2, 2, index + 1)
        colours = ["tab:green" if parse_variant(name) is None else
                   "tab:blue" if parse_variant(name)[1] == 0 else "tab:orange" for name in names]
        axes.bar(range(len(names)), values, color=colours)
        axes.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        axes.set_title(title, fontsize=10)
        for x, value in enumerate(values):
            axes.text(x, value, f"{value:.3g}", ha="center", va="bottom", fontsize=7)
        low, high = min(values), max(values)
        axes.set_ylim(max(0.0, low - 0.5 * (high - low) - 0.02 * high), high + 0.15 * (high - low) + 0.02 * high)
    figure.suptitle("BP-FPN ablation on the Halmstad val clips (blue: 1 frame, orange: k previous frames too, "
                    "green: the released model)")
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here (and a PNG beside it)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "bpfpn_ablation",
                        help="training runs, one folder per variant (reused when finished)")
    parser.add_argument("--epochs", type=int, default=4,
                        help="training epochs per variant (397 iterations of batch 8 each; lr x0.1 for the last)")
    parser.add_argument("--frames", type=int, default=2, help="k, the previous frames of the multi-frame rows")
    parser.add_argument("--variants", nargs="+",
                        help="only these variants, <neck>_k<frames>[_s<seed>] (default: every neck with k=0, then "
                             "with k=FRAMES, seed 0); a seed suffix repeats a variant to show the seed-to-seed spread")
    parser.add_argument("--train-only", action="store_true", help="train the variants, score nothing")
    parser.add_argument("--scores-only", action="store_true",
                        help="train and score the variants (cached in their run folders), time nothing, write nothing")
    parser.add_argument("--release", type=Path, nargs="+", default=[],
                        help="also score these released model folders (model.pt, train_config.yaml) the same way")
    parser.add_argument("--clips", type=int, help="score on the first CLIPS val clips only (a quick look)")
    args = parser.parse_args()
    names = args.variants or variant_names(args.frames)
    unknown = [n for n in names if parse_variant(n) is None]
    if unknown:
        parser.error(f"unknown variants {unknown}: use <neck>_k<frames>, or <neck>_k<frames>_s<seed> for another "
                     f"seed than 0, with neck one of {', '.join(NECKS)}")
    configs = {name: train_variant(name, args.runs / name, args.epochs) for name in names}
    if args.train_only:
        return
    results = {"variants": {}, "settings": {
        "train_config": str(TRAIN_CONFIG.relative_to(REPO)), "model_config": str(MODEL_CONFIG.relative_to(REPO)),
        "epochs": args.epochs, "val_clips": None, "frames": None, "match_distance_px": CENTROID_PX,
        "tracker_match_distance_px": TRACK_MATCH_PX, "tracking_false_alarms_per_frame": TRACKING_FALSE_ALARMS,
        "command": " ".join(["python benchmarks/bpfpn_ablation.py", *sys.argv[1:]])},
        "machine": machine(("torch", "onnxruntime"))}
    # name -> (config, checkpoint, frames k, score cache); the released models last, scored the same way
    rows = {name: (config, args.runs / name / "last.pt", parse_variant(name)[1], args.runs / name / "scores.json")
            for name, config in configs.items()}
    for release in args.release:
        config = load_train_config(release / "train_config.yaml")
        rows[f"released {release.name}"] = (config, release / "model.pt",
                                            config.model_config()["input"].get("previous_frames", 0), None)
    sets: dict[int, KeepRatioTestSet] = {}
    for name, (config, checkpoint, k, cache) in rows.items():
        if k not in sets:
            sets = {k: val_frames(config, k, args.clips)}  # one frame set in memory at a time (k-sorted names reuse it)
        results["variants"][name] = detection_scores(config, checkpoint, sets[k], cache)
        results["settings"]["val_clips"] = len(sets[k].dataset.sequences.clips)
        results["settings"]["frames"] = len(sets[k])
    if args.scores_only:
        return
    sets.clear()
    with tempfile.TemporaryDirectory() as exports:
        for name, (config, checkpoint, _, _) in rows.items():  # last, so every latency is timed on a quiet machine
            detector, _ = load_trained_detector(config, str(checkpoint))
            row = results["variants"][name] | cost(detector, Path(exports) / "model.onnx",
                                                   tuple(config.data.input_size))
            results["variants"][name] = row
            pd = row["pd_at_false_alarms_per_frame"][str(TRACKING_FALSE_ALARMS)]
            print(f"{name:24s} AP50 {row['AP50']:.3f}  Pd@{TRACKING_FALSE_ALARMS}FA "
                  f"{pd if pd is not None else float('nan'):.3f}  IDF1 "
                  f"{(row['tracking'] or {'IDF1': float('nan')})['IDF1']:.3f}  {row['gflops']:.3f} GFLOPs  "
                  f"{row['latency_ms_p50']:.2f} ms", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        plot(results, args.json.with_suffix(".png"))
        print(f"wrote {args.json} and {args.json.with_suffix('.png')}")


if __name__ == "__main__":
    main()
