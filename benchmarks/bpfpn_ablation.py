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
- params, FLOPs (from the exported ONNX at 320x256) and CPU latency (ONNX Runtime, batch 1): every model is timed
  in each of 30 rounds, in a new order each round, and its cost is also given as the median over rounds of its
  fastest run in the round over the plain FPN's with the same input frames, so a few percent stand out of the
  machine's drift.

A seed suffix (``_s1``) repeats a variant with another weight init and batch order; the summary gives each
variant's mean and std over its seeds and the paired differences, seed by seed, from the plain FPN and (k > 0) from
the same neck on single frames. ``_gap<s>`` spaces the previous frames s apart (input.frame_spacing); ``_finest``
fuses the frames at the finest level instead of stacking them at the stem (input.frame_fusion), compared with
stacking too; ``_syn<n>`` adds n simulated clips to the train clips (data.synthetic_clips), compared with the same
variant without them.

Training runs land in runs/bpfpn_ablation/<variant>/ and are reused: a finished one is only scored, an unfinished
one resumed, and its scores are kept beside it (scores.json) until its last.pt changes (a released model's in
runs/bpfpn_ablation/released_<name>/). Variants can be trained and scored in several processes (--variants,
--scores-only); latency is timed last, for all variants in one process.

    python benchmarks/bpfpn_ablation.py --json benchmarks/results/bpfpn_ablation.json
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

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
from training.voc_eval import pd_at_false_alarm_rates  # noqa: E402

TRAIN_CONFIG = REPO / "configs" / "train" / "bpfpn_halmstad_cpu.yaml"
MODEL_CONFIG = REPO / "configs" / "models" / "bpfpn_tiny.yaml"
GROUP_NORM = {"norm": "group"}  # the GILS adapter's norm unless a variant says batch
NECKS = {  # neck overrides of bpfpn_tiny.yaml (GILS on with detach, DGR 0.1)
    "fpn": {"gils": {"enabled": False}, "dgr": {"weight": 0.0}},
    "gils": {"gils": GROUP_NORM, "dgr": {"weight": 0.0}},
    "gils_nodetach": {"gils": {**GROUP_NORM, "detach": False}, "dgr": {"weight": 0.0}},
    "dgr": {"gils": {"enabled": False}},
    "gils_dgr": {"gils": GROUP_NORM},
    "gils_bn_dgr": {"gils": {"norm": "batch"}},  # the adapter's norm foldable into its conv at inference
    # from the stem's stride-2 map: P2 already takes C2 through its lateral conv (models/bpfpn.py)
    "gils_stem": {"gils": {"source": "stem", "norm": "batch"}, "dgr": {"weight": 0.0}},
    "gils_stem_dgr": {"gils": {"source": "stem", "norm": "batch"}},
}
VARIANT_GRAMMAR = "<neck>_k<frames>[_gap<spacing>][_finest][_syn<clips>][_s<seed>]"  # parse_variant reads it
RELEASED = "released "  # the row name of a --release model folder is this plus the folder's name
FALSE_ALARM_RATES = (0.1, 0.5, 1.0)  # per frame: the operating points Pd is compared at
TRACKING_FALSE_ALARMS = 0.5          # the tracker gets each variant's detections at this false-alarm rate
THRESHOLDS = np.round(np.arange(0.02, 0.62, 0.02), 2)
CENTROID_PX = 3.0                    # Pd / Fa: the usual SIRST centroid criterion (as densesirst_eval.py)
TRACK_MATCH_PX = 5.0                 # tracker metrics: as benchmarks/tracker_bench.py
LATENCY_ROUNDS, LATENCY_RUNS, LATENCY_WARMUP = 30, 25, 5  # interleaved_latencies: rounds x timed runs per model
METRICS = {  # the scores summarised over seeds: name -> how to read it from a variant's row (None: not reached)
    "AP50": lambda row: row["AP50"],
    f"Pd@{TRACKING_FALSE_ALARMS}FA": lambda row: row["pd_at_false_alarms_per_frame"][str(TRACKING_FALSE_ALARMS)],
    "MOTA": lambda row: (row["tracking"] or {}).get("MOTA"),
    "IDF1": lambda row: (row["tracking"] or {}).get("IDF1"),
}


class Variant(NamedTuple):
    neck: str          # a NECKS key
    frames: int        # k, the previous frames (input.previous_frames)
    spacing: int       # frames between two input slots (input.frame_spacing)
    fusion: str        # where the frames meet (input.frame_fusion): stem or finest
    synthetic: int     # simulated clips added to the train clips (data.synthetic_clips)
    seed: int          # loop.seed: weight init and batch order


def variant_names(frames: int) -> list[str]:
    return [variant_name(Variant(neck, k, 1, "stem", 0, 0)) for k in (0, frames) for neck in NECKS]


def parse_variant(name: str) -> Variant | None:
    """A VARIANT_GRAMMAR name -> Variant; None for anything else."""
    match = re.fullmatch(r"(\w+?)_k(\d+)(?:_gap(\d+))?(_finest)?(?:_syn(\d+))?(?:_s(\d+))?", name)
    if (match is None or match[1] not in NECKS or (match[3] is not None and int(match[3]) < 1)
            or (match[4] and match[2] == "0")):
        return None
    return Variant(match[1], int(match[2]), int(match[3] or 1), "finest" if match[4] else "stem", int(match[5] or 0),
                   int(match[6] or 0))


def variant_name(variant: Variant) -> str:
    """The inverse of parse_variant (spacing 1, stem fusion, no simulated clips and seed 0 are left out)."""
    gap = f"_gap{variant.spacing}" if variant.spacing != 1 else ""
    fusion = "_finest" if variant.fusion == "finest" else ""
    synthetic = f"_syn{variant.synthetic}" if variant.synthetic else ""
    return f"{variant.neck}_k{variant.frames}{gap}{fusion}{synthetic}" + (f"_s{variant.seed}" if variant.seed else "")


def seedless_name(name: str) -> str:
    """A row's variant over all its seeds ('dgr_k0_s2' -> 'dgr_k0'); a released model's name as it is."""
    parsed = parse_variant(name)
    return name if parsed is None else variant_name(parsed._replace(seed=0))


def model_config(variant: str) -> dict:
    """bpfpn_tiny's config with the variant's neck switches and previous frames."""
    parsed = parse_variant(variant)
    config = yaml.safe_load(MODEL_CONFIG.read_text())
    config["name"] = f"bpfpn_tiny_{variant}"
    config["input"].update(previous_frames=parsed.frames, frame_spacing=parsed.spacing, frame_fusion=parsed.fusion)
    for part, values in NECKS[parsed.neck].items():
        config["neck"][part].update(values)
    return config


def train_config(variant: str, run_dir: Path, epochs: int) -> TrainConfig:
    """The Halmstad recipe cut to ``epochs`` (lr x0.1 for the last one), no validation, this variant's model."""
    model_path = run_dir / "model.yaml"
    run_dir.mkdir(parents=True, exist_ok=True)
    model_path.write_text(yaml.safe_dump(model_config(variant), sort_keys=False))
    return load_train_config(TRAIN_CONFIG, [
        f"name={variant}", f"model={model_path}", "data.val_split=null", f"schedule.epochs={epochs}",
        f"loop.seed={parse_variant(variant).seed}", f"data.synthetic_clips={parse_variant(variant).synthetic}",
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

def val_frames(config: TrainConfig, previous_frames: int, spacing: int, limit: int | None) -> KeepRatioTestSet:
    """Every frame of the val clips (not only the key frames; the first ``limit`` clips), each with its k previous
    frames ``spacing`` apart."""
    clips = read_clip_split(config.data.clip_split_path)["val"][:limit]
    sequences = ClipSequences(config.data.clips_root_path, clips, previous_frames, step=1, frame_spacing=spacing)
    return KeepRatioTestSet(ClipKeyFrames(sequences), size=tuple(config.data.input_size))


def operating_points(detections: list[Detections], gt: list[np.ndarray]) -> tuple[list[dict], dict]:
    """(Pd / false alarms per frame at every THRESHOLDS value, {rate: Pd at each FALSE_ALARM_RATES rate or None})."""
    sweep, at_rate = pd_at_false_alarm_rates(detections, gt, FALSE_ALARM_RATES, THRESHOLDS, CENTROID_PX)
    points = [{"threshold": p["score_threshold"], "pd": round(p["pd"], 4),
               "false_alarms_per_frame": round(p["false_alarms_per_image"], 4)} for p in sweep]
    return points, {str(rate): None if pd is None else round(pd, 4) for rate, pd in at_rate.items()}


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
    """Parameters and FLOPs per frame at ``size`` (w, h), from the ONNX it exports to ``onnx_path``."""
    from engines.onnx_graph import count_macs

    path = export_onnx(detector, onnx_path)
    width, height = size
    training_only = detector.neck.regularizer
    return {"params": sum(p.numel() for p in detector.parameters()),
            "training_only_params": 0 if training_only is None else sum(p.numel() for p in training_only.parameters()),
            "gflops": round(2 * count_macs(path, height, width)["total"] / 1e9, 4)}


def interleaved_latencies(models: dict[str, tuple[Path, int]], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """ONNX Runtime milliseconds [LATENCY_ROUNDS, LATENCY_RUNS] per model ({name: (onnx, frames per input)}) at
    batch 1 and ``size`` (w, h). Each round times every model in a new random order, so a slow spell of the machine
    falls on all models alike instead of on whichever was being timed: rows differing by a few percent can then
    be told apart (the round-by-round ratios, ``latency_ratios``). Only the model being timed has a session: idle
    sessions' threads would spin on the same cores."""
    order = np.random.default_rng(0)
    times = {name: [] for name in models}
    for _ in range(LATENCY_ROUNDS):
        for name in order.permutation(list(models)):
            times[name].append(session_latencies(*models[name], size))
    return {name: np.array(rounds) for name, rounds in times.items()}


def session_latencies(onnx: Path, frames: int, size: tuple[int, int]) -> np.ndarray:
    """LATENCY_RUNS timed runs of a new session of ``onnx``, closed on return."""
    import onnxruntime

    width, height = size
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((1, frames, height, width), dtype=np.float32)
    return latencies_ms(lambda _: session.run(None, {"images": images}), LATENCY_RUNS, warmup=LATENCY_WARMUP)


def latency_ratios(times: np.ndarray, reference: np.ndarray) -> dict:
    """Median and 10th / 90th percentiles over rounds of (this model's fastest run in the round / the reference's):
    the fastest of a round's runs is the model's own cost whenever one run escaped the machine's other work, where
    the round's median still moves with it."""
    ratios = times.min(axis=1) / reference.min(axis=1)
    return {"median": round(float(np.median(ratios)), 4), "p10": round(float(np.percentile(ratios, 10)), 4),
            "p90": round(float(np.percentile(ratios, 90)), 4)}


def detection_scores(config: TrainConfig, checkpoint: Path, test_set: KeepRatioTestSet,
                     cache: Path) -> dict:
    """AP50, Pd at the FALSE_ALARM_RATES and the tracker's scores of ``checkpoint`` on ``test_set``, kept in
    ``cache`` (a JSON file) for as long as the checkpoint and the scored clips are the same."""
    key = {"checkpoint_mtime_ns": checkpoint.stat().st_mtime_ns, "frames": len(test_set)}
    if cache.exists() and (cached := json.loads(cache.read_text())).get("key") == key:
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
    cache.write_text(json.dumps({"key": key, "scores": scores}, indent=1) + "\n")
    return scores


def summarise(variants: dict[str, dict]) -> list[dict]:
    """Per variant over its seeds (releases left out): mean and sample std of each METRICS score, and the paired
    differences, seed by seed (same weight init), from the plain FPN with the same input frames, for k > 0 from the
    same neck on single frames, and with simulated clips from the same variant without them.
    """
    groups: dict[Variant, dict[int, dict]] = {}
    for name, row in variants.items():
        if (parsed := parse_variant(name)) is not None:
            groups.setdefault(parsed._replace(seed=0), {})[parsed.seed] = row
    summary = []
    for key, by_seed in groups.items():
        entry = {"variant": variant_name(key), "seeds": sorted(by_seed)}
        references = {"vs_plain_fpn": key._replace(neck="fpn"),
                      "vs_single_frame": key._replace(frames=0, spacing=1, fusion="stem"),
                      "vs_stem_stacking": key._replace(fusion="stem"), "vs_real_clips_only": key._replace(synthetic=0)}
        for metric, read in METRICS.items():
            entry[metric] = _spread([read(row) for row in by_seed.values()])
            for label, reference in references.items():
                if reference != key and reference in groups:
                    paired = [read(row) - read(groups[reference][seed]) if read(groups[reference][seed]) is not None
                              and read(row) is not None else None
                              for seed, row in by_seed.items() if seed in groups[reference]]
                    entry[metric][label] = _spread(paired)
        summary.append(entry)
    return summary


def _spread(values: list[float | None]) -> dict:
    """n, mean and sample std (None below 2 values) of the values that are not None."""
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    return {"n": len(present), "mean": round(float(present.mean()), 4) if len(present) else None,
            "std": round(float(present.std(ddof=1)), 4) if len(present) > 1 else None}


def plot(results: dict, path: Path) -> None:
    """Each score per variant: a bar at the mean over seeds, a dot for every seed, and the released models."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups: dict[str, list[dict]] = {}
    for name, row in results["variants"].items():
        groups.setdefault(seedless_name(name), []).append(row)
    names = list(groups)
    titles = {"AP50": "AP50 (every val frame)", "IDF1": "tracker IDF1",
              f"Pd@{TRACKING_FALSE_ALARMS}FA": f"Pd at {TRACKING_FALSE_ALARMS} false alarms per frame"}
    panels = [(titles[metric], METRICS[metric]) for metric in titles]
    panels.append(("ONNX Runtime latency p50, ms (interleaved)", lambda row: row.get("latency_ms_p50")))
    figure = Figure(figsize=(13, 8), layout="constrained")
    FigureCanvasAgg(figure)
    for index, (title, read) in enumerate(panels):
        axes = figure.add_subplot(2, 2, index + 1)
        values = [[v for v in map(read, groups[name]) if v is not None] for name in names]
        means = [float(np.mean(v)) if v else 0.0 for v in values]
        colours = ["tab:green" if parse_variant(name) is None else "tab:blue" if parse_variant(name).frames == 0
                   else "tab:orange" for name in names]
        axes.bar(range(len(names)), means, color=colours, alpha=0.7)
        for x, seeds in enumerate(values):
            axes.plot([x] * len(seeds), seeds, "k.", markersize=4)
            axes.text(x, max(seeds, default=0), f"{means[x]:.3g}", ha="center", va="bottom", fontsize=7)
        axes.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        axes.set_title(title, fontsize=10)
        every = [v for seeds in values for v in seeds] or [0.0]
        low, high = min(every), max(every)
        axes.set_ylim(max(0.0, low - 0.5 * (high - low) - 0.02 * high), high + 0.15 * (high - low) + 0.02 * high)
    figure.suptitle("BP-FPN ablation, Halmstad val clips. Bars: mean over seeds, dots: seeds; blue: 1 frame, "
                    "orange: k previous frames too, green: released")
    figure.savefig(path, dpi=110)


class Row(NamedTuple):
    config: TrainConfig
    checkpoint: Path
    inputs: tuple[int, int]   # (previous frames k, frame spacing)
    cache: Path               # scores.json, kept in the runs folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here (and a PNG beside it)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "bpfpn_ablation",
                        help="training runs, one folder per variant (reused when finished)")
    parser.add_argument("--epochs", type=int, default=4,
                        help="training epochs per variant (397 iterations of batch 8 each; lr x0.1 for the last)")
    parser.add_argument("--frames", type=int, default=2, help="k, the previous frames of the multi-frame rows")
    parser.add_argument("--variants", nargs="+",
                        help=f"only these variants, {VARIANT_GRAMMAR} "
                             "(default: every neck with k=0, then with k=FRAMES, seed 0); a seed suffix repeats a "
                             "variant to show the seed-to-seed spread, _gap<s> spaces the previous frames s apart, "
                             "_finest fuses the frames at the finest level (k > 0), _syn<n> adds n simulated train "
                             "clips")
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
        parser.error(f"unknown variants {unknown}: use {VARIANT_GRAMMAR} "
                     f"(e.g. gils_k2_gap5_s1), with neck one of {', '.join(NECKS)}")
    configs = {name: train_variant(name, args.runs / name, args.epochs) for name in names}
    if args.train_only:
        return
    results = {"variants": {}, "settings": {
        "train_config": str(TRAIN_CONFIG.relative_to(REPO)), "model_config": str(MODEL_CONFIG.relative_to(REPO)),
        "epochs": args.epochs, "val_clips": None, "frames": None, "match_distance_px": CENTROID_PX,
        "tracker_match_distance_px": TRACK_MATCH_PX, "tracking_false_alarms_per_frame": TRACKING_FALSE_ALARMS,
        "command": " ".join(["python benchmarks/bpfpn_ablation.py", *sys.argv[1:]])},
        "machine": machine(("torch", "onnxruntime"))}
    rows = {name: Row(config, args.runs / name / "last.pt", (parse_variant(name).frames, parse_variant(name).spacing),
                      args.runs / name / "scores.json")
            for name, config in configs.items()}  # the released models last, scored the same way
    for release in args.release:
        config = load_train_config(release / "train_config.yaml")  # its model: the release's model.yaml
        model_input = config.model_config()["input"]
        cache = args.runs / f"released_{release.name}" / "scores.json"
        cache.parent.mkdir(parents=True, exist_ok=True)
        rows[RELEASED + release.name] = Row(config, release / "model.pt", (model_input.get("previous_frames", 0),
                                               model_input.get("frame_spacing", 1)), cache)
    sets: dict[tuple[int, int], KeepRatioTestSet] = {}
    for name, row in rows.items():
        if row.inputs not in sets:  # one frame set in memory at a time (names sorted by input reuse it)
            sets = {row.inputs: val_frames(row.config, *row.inputs, args.clips)}
        test_set = sets[row.inputs]
        results["variants"][name] = detection_scores(row.config, row.checkpoint, test_set, row.cache)
        results["settings"]["val_clips"] = len(test_set.dataset.sequences.clips)
        results["settings"]["frames"] = len(test_set)
    if args.scores_only:
        return
    sets.clear()
    size = tuple(next(iter(rows.values())).config.data.input_size)
    with tempfile.TemporaryDirectory() as exports:  # latency last, for all rows at once, on a quiet machine
        models = {}
        for index, (name, row) in enumerate(rows.items()):
            detector, _ = load_trained_detector(row.config, str(row.checkpoint))
            onnx = Path(exports) / f"{index}.onnx"
            results["variants"][name] |= cost(detector, onnx, size)
            models[name] = (onnx, detector.frames)
        times = interleaved_latencies(models, size)
    for name, row in rows.items():
        reference = variant_name(Variant("fpn", *row.inputs, "stem", 0, 0))
        results["variants"][name] |= {
            "latency_ms_p50": round(float(np.median(times[name])), 3),
            "latency_ms_p90": round(float(np.percentile(times[name], 90)), 3),
            "latency_vs_plain_fpn": latency_ratios(times[name], times[reference]) if reference in times else None}
        print_row(name, results["variants"][name])
    results["summary"] = summarise(results["variants"])
    for entry in results["summary"]:
        print_summary(entry)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        released = released_table(results)
        args.json.with_suffix(".md").write_text(markdown_table(results) + (f"\n{released}" if released else ""))
        plot(results, args.json.with_suffix(".png"))
        print(f"wrote {args.json} and its .md (the summary table) and .png")


def markdown_table(results: dict) -> str:
    """The summary as a Markdown table (README, model cards): AP50, Pd and IDF1 as mean +- std over seeds, the
    mean paired differences (AP50 / Pd) from each reference some variant has, and latency as the mean of the
    rows' ratios to the plain FPN with the same inputs."""
    def cell(values: dict | None, signed: bool = False) -> str:
        if values is None or values["mean"] is None:
            return "-"
        text = f"{values['mean']:+.3f}" if signed else f"{values['mean']:.3f}"
        return text + (f" ± {values['std']:.3f}" if values["std"] is not None else "")

    labels = {"vs_plain_fpn": "plain FPN", "vs_single_frame": "1 frame", "vs_stem_stacking": "stem stacking",
              "vs_real_clips_only": "real clips only"}
    present = [label for label in labels if any(label in entry["AP50"] for entry in results["summary"])]
    pd = f"Pd@{TRACKING_FALSE_ALARMS}FA"
    header = ["variant", "seeds", "AP50", f"Pd at {TRACKING_FALSE_ALARMS} FA/frame", "IDF1",
              *(f"Δ AP50 / Δ Pd vs {labels[label]}" for label in present), "latency / plain FPN"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for entry in results["summary"]:
        ratios = [row["latency_vs_plain_fpn"]["median"] for name, row in results["variants"].items()
                  if seedless_name(name) == entry["variant"] and row.get("latency_vs_plain_fpn")]
        cells = [entry["variant"], str(len(entry["seeds"])), cell(entry["AP50"]), cell(entry[pd]), cell(entry["IDF1"])]
        cells += [f"{cell(entry['AP50'].get(label), True)} / {cell(entry[pd].get(label), True)}"
                  if label in entry["AP50"] else "-" for label in present]
        cells.append(f"{np.mean(ratios):.3f}" if ratios else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def released_table(results: dict) -> str:
    """The --release rows as a Markdown table ('' without any): AP50, Pd at every FALSE_ALARM_RATES, the
    tracker's IDF1 and the latency ratio to the plain FPN with the same inputs."""
    rows = {name.removeprefix(RELEASED): row for name, row in results["variants"].items() if name.startswith(RELEASED)}
    if not rows:
        return ""
    rates = " / ".join(f"{rate:g}" for rate in FALSE_ALARM_RATES)
    lines = [f"| model | AP50 | Pd at {rates} FA/frame | IDF1 | latency / plain FPN |", "|" + " --- |" * 5]
    for name, row in rows.items():
        pd = " / ".join(f"{row['pd_at_false_alarms_per_frame'][str(rate)]:.3f}" for rate in FALSE_ALARM_RATES)
        idf1 = f"{row['tracking']['IDF1']:.3f}" if row.get("tracking") else "-"
        ratio = f"{row['latency_vs_plain_fpn']['median']:.3f}" if row.get("latency_vs_plain_fpn") else "-"
        lines.append(f"| {name} | {row['AP50']:.3f} | {pd} | {idf1} | {ratio} |")
    return "\n".join(lines) + "\n"


def print_row(name: str, row: dict) -> None:
    scores = "  ".join(f"{metric} {value:.3f}" if (value := read(row)) is not None else f"{metric} -"
                       for metric, read in METRICS.items())
    ratio = row["latency_vs_plain_fpn"]
    print(f"{name:28s} {scores}  {row['gflops']:.3f} GFLOPs  {row['latency_ms_p50']:.2f} ms"
          + (f" ({ratio['median']:.3f}x plain FPN)" if ratio else ""), flush=True)


def print_summary(entry: dict) -> None:
    """One line per variant: mean +- std over seeds, then the paired differences."""
    def spread(values: dict) -> str:
        if values["mean"] is None:
            return "-"
        return f"{values['mean']:+.3f}" + (f"+-{values['std']:.3f}" if values["std"] is not None else "")

    parts = []
    for metric in METRICS:
        values = entry[metric]
        paired = [f"{label[3:]} {spread(values[label])}" for label in values if label.startswith("vs_")]
        parts.append(f"{metric} {spread(values).lstrip('+')}" + (f" ({', '.join(paired)})" if paired else ""))
    print(f"{entry['variant']:22s} n={len(entry['seeds'])}  " + "  ".join(parts), flush=True)


if __name__ == "__main__":
    main()
