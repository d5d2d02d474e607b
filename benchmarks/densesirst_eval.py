#!/usr/bin/env python3
"""DenseSIRST accuracy of a released model, run through the pipeline's own ONNX Runtime engine.

Each image of the split is resized as the model was trained (the release's train_config.yaml says how: keep-ratio
or stretch, and the input size), handed to the engine as a frame, and its detections (engine NMS, the best 100)
are mapped back to original pixels and scored with the reference's VOC protocol (IoU 0.5, +1 pixel coordinates):
mAP07 (11-point), mAP12 (area), final recall; plus Pd / false alarms per image by 3 px centroid distance at a
range of score thresholds (run it on val_v2 to choose the pipeline's detector.score_threshold). A model with an
input resize_factor other than 1 (ONNX metadata) gets each image as it is, and the engine resizes it by that
factor, exactly as in the pipeline ('factor'). Writes the JSON and, beside it, the precision-recall curve as PNG.

    python benchmarks/densesirst_eval.py --json benchmarks/results/densesirst_eval.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import machine  # noqa: E402
from engines import DetectorConfig  # noqa: E402
from engines.model_files import ModelFiles  # noqa: E402
from engines.onnxruntime_backend import OnnxRuntimeDetector  # noqa: E402
from pipeline.config import read_yaml_file  # noqa: E402
from pipeline.progress import ProgressLine  # noqa: E402
from pipeline.types import Detections  # noqa: E402
from training.densesirst import DenseSirst  # noqa: E402
from training.transforms import boxes_to_original, resize_keep_ratio, resize_stretch  # noqa: E402
from training.voc_eval import evaluate_voc, pd_fa, write_pr_curve  # noqa: E402

DEFAULT_WEIGHTS = REPO / "weights" / "bafenet_tiny_x2"
DEFAULT_ROOT = REPO / "../shared/data/densesirst/SIRSTdevkit"
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)  # operating points for Pd / false alarms


def resize_settings(weights: Path, input_size: list[int] | None, resize: str | None) -> tuple[tuple[int, int], str]:
    """(width, height) and resize mode: the flags, else the release's train_config.yaml, else the reference's."""
    folder = weights if weights.is_dir() else weights.parent
    data = {}
    if (folder / "train_config.yaml").is_file():
        data = read_yaml_file(folder / "train_config.yaml", "train config").get("data", {})
    size = input_size or data.get("input_size") or [512, 512]
    return (int(size[0]), int(size[1])), resize or data.get("resize") or "stretch"


def size_groups(sizes: list[tuple[int, int]]) -> dict[str, list[int]]:
    """Image indices by original size against the 640x512 sensor most DenseSIRST images come from: a model that
    shrinks or upscales images does well on some groups and badly on others, which the overall numbers hide."""
    groups: dict[str, list[int]] = {"smaller than 640x512": [], "640x512": [], "larger than 640x512": []}
    for index, (height, width) in enumerate(sizes):
        key = ("640x512" if (width, height) == (640, 512) else
               "smaller than 640x512" if width * height < 640 * 512 else "larger than 640x512")
        groups[key].append(index)
    return {key: members for key, members in groups.items() if members}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                        help="released model folder or .onnx (default: weights/bafenet_tiny_x2)")
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="DenseSIRST SIRSTdevkit folder")
    parser.add_argument("--split", default="test_v2", help="split to evaluate (default test_v2)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"),
                        help="resize images to this before the engine (default: from the release's train_config)")
    parser.add_argument("--resize", choices=("stretch", "keep_ratio", "factor"),
                        help="how (default: 'factor' for a model with a resize_factor, else from train_config; "
                             "'factor': images as they are, the engine resizes them)")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: one per core)")
    args = parser.parse_args()

    weights = Path(args.weights)
    onnx_path = ModelFiles.find(weights).onnx
    if onnx_path is None:
        sys.exit(f"error: no ONNX model at {weights} (give a released model folder or an .onnx file)")
    # The scores the VOC protocol ranks: everything the graph emits (its own 0.05 floor), NMS 0.5, best 100.
    config = DetectorConfig(engine="onnxruntime", weights=str(onnx_path), score_threshold=1e-6, nms_iou=0.5,
                            max_detections=100)
    config.onnxruntime.intra_op_threads = args.threads
    engine = OnnxRuntimeDetector(onnx_path, config)
    size, resize_mode = resize_settings(weights, args.input_size,
                                        args.resize or ("factor" if engine.spec.resize_factor != 1 else None))
    resize = {"keep_ratio": resize_keep_ratio, "stretch": resize_stretch,
              "factor": lambda sample, size: sample}[resize_mode]
    dataset = DenseSirst(args.root, args.split, with_masks=False)

    detections, seconds, sizes = [], [], []
    progress = ProgressLine(len(dataset), f"{args.split}")
    for index in range(len(dataset)):
        sample = resize(dataset[index], size)
        started = time.perf_counter()
        found = engine.detect([sample.image])[0]
        seconds.append(time.perf_counter() - started)
        height, width = sample.original_hw
        sizes.append((height, width))
        boxes = np.clip(boxes_to_original(found.boxes, sample.scale_factor), 0, [width, height, width, height])
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        detections.append(Detections(boxes[valid].astype(np.float32), found.scores[valid]))
        progress.update(index + 1)
    progress.finish(len(dataset))
    engine.close()

    annotations = dataset.annotations
    gt_boxes = [a.boxes for a in annotations]
    result = evaluate_voc(detections, gt_boxes, [a.difficult for a in annotations])
    sweep = {f"{threshold:g}": pd_fa(detections, gt_boxes, score_threshold=threshold) for threshold in THRESHOLDS}
    by_size = {}
    for group, members in size_groups(sizes).items():
        part = evaluate_voc([detections[i] for i in members], [gt_boxes[i] for i in members],
                            [annotations[i].difficult for i in members])
        by_size[group] = {"images": len(members), "boxes": int(part.num_gt), "mAP07": round(part.ap_11point, 4),
                          "mAP12": round(part.ap_area, 4), "recall": round(part.recall, 4)}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    curve = write_pr_curve(result, out.with_suffix(".png"), title=f"{onnx_path.parent.name} on DenseSIRST {args.split}")
    report = {
        "mAP07": round(result.ap_11point, 4), "mAP12": round(result.ap_area, 4), "recall": round(result.recall, 4),
        "images": len(dataset), "boxes": int(result.num_gt), "model": str(onnx_path.resolve().relative_to(REPO))
        if onnx_path.resolve().is_relative_to(REPO) else str(onnx_path),
        "split": args.split, "input_size": None if resize_mode == "factor" else list(size), "resize": resize_mode,
        "resize_factor": engine.spec.resize_factor,
        "by_image_size": by_size,
        "pd_fa_by_score_threshold": {threshold: {"pd": round(point["pd"], 4),
                                                 "false_alarms_per_image": round(point["false_alarms_per_image"], 3)}
                                     for threshold, point in sweep.items()},
        "engine_ms_per_image_median": round(1e3 * float(np.median(seconds)), 2),
        "pr_curve": str(curve.name),
        "protocol": "VOC AP at IoU 0.5 with +1 pixel coordinates in original pixels (the reference's)",
        "machine": machine(("onnxruntime",)),
        "command": "python benchmarks/densesirst_eval.py " + " ".join(sys.argv[1:]),
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("mAP07", "mAP12", "recall", "images", "boxes", "model")}))


if __name__ == "__main__":
    main()
