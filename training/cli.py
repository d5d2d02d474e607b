"""`python train.py train | evaluate | export | build-engine`: the trainer's command line. User mistakes print one
`error:` line and exit 2, as run_pipeline.py does; Ctrl-C during training saves last.pt and exits 130."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.errors import UserError
from pipeline.schema import describe
from training.config import REPO_ROOT, TrainConfig, load_train_config

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
DEFAULT_CONFIG = REPO_ROOT / "configs" / "train" / "bafenet_lite_cpu.yaml"


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=str(DEFAULT_CONFIG), help="train YAML (default: %(default)s)")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config option, e.g. --set schedule.epochs=12 (repeatable)")
    p = argparse.ArgumentParser(
        prog="train.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train, evaluate and export the detectors (BAFE-Net) on DenseSIRST.",
        epilog="config options (set in the YAML file or with --set KEY=VALUE):\n" + "\n".join(describe(TrainConfig)))
    commands = p.add_subparsers(dest="command", required=True, metavar="{train,evaluate,export,release,build-engine}")
    train = commands.add_parser("train", parents=[common], help="train; outputs in runs/train/<name>/")
    train.add_argument("--resume", metavar="PATH", help="continue exactly from a last.pt / best.pt checkpoint")
    train.add_argument("--init", metavar="PATH", help="start from these model weights (a checkpoint or a released "
                                                      "model.pt) with a new optimizer and schedule: fine-tuning")
    evaluate = commands.add_parser("evaluate", parents=[common],
                                   help="VOC mAP07 / mAP12 / recall of a checkpoint on one split")
    evaluate.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint or model state dict (.pt)")
    evaluate.add_argument("--split", required=True, help="split to evaluate (val_v2 while developing; test_v2 "
                                                         "once per released model)")
    evaluate.add_argument("--out", metavar="DIR", help="folder for eval_<split>.json and pr_<split>.png "
                                                       "(default: the checkpoint's folder)")
    export = commands.add_parser("export", parents=[common], help="ONNX for the engines, checked in ONNX Runtime")
    export.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint or model state dict (.pt)")
    export.add_argument("--out", required=True, metavar="FILE", help="ONNX file to write")
    export.add_argument("--dynamic-size", action="store_true",
                        help="dynamic height / width (frames run at their own size times the model's "
                             "resize_factor) instead of data.input_size; always so with data.resize 'factor'")
    release = commands.add_parser(
        "release", parents=[common], help="a released model folder (weights/<name>/) from a checkpoint",
        description="Write model.onnx (dynamic size, checked against torch), model.pt, model.yaml, "
                    "train_config.yaml and the run's log and curves into --out; see training/release.py.")
    release.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint (best.pt) to release")
    release.add_argument("--out", required=True, metavar="DIR", help="release folder, e.g. weights/bafenet_tiny")
    build = commands.add_parser(
        "build-engine", parents=[common], help="TensorRT plan from an exported ONNX, into the engine cache",
        description="Check that TensorRT supports every operator of the ONNX, then build (or find in the cache) "
                    "the plan that detector.engine 'tensorrt' runs on this GPU. Needs the tensorrt extra and an "
                    "NVIDIA GPU, except --fp16-onnx and --int8-onnx, which only write the FP16 or INT8 (Q/DQ) ONNX "
                    "a strongly typed TensorRT (11) builds fp16 or int8 plans from; ONNX Runtime runs both on the "
                    "CPU.")
    build.add_argument("--onnx", required=True, metavar="PATH", help="exported ONNX, or a released model folder")
    build.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16",
                       help="plan precision (default: %(default)s; see engines/tensorrt_backend.py)")
    build.add_argument("--batch-size", type=int, default=1, help="batch the profile is tuned for (default: 1)")
    build.add_argument("--max-batch", type=int, default=32, help="largest batch the plan accepts (default: 32)")
    build.add_argument("--input-size", metavar="HxW", help="largest frame size, for an ONNX with dynamic height / "
                                                           "width, e.g. 512x640")
    build.add_argument("--cache-dir", help="engine cache folder (default: detector.tensorrt.cache_dir's default)")
    build.add_argument("--calibration", metavar="SOURCE",
                       help="int8 (TensorRT 10's calibrator, TensorRT 11's Q/DQ ONNX, --int8-onnx): video, image "
                            "folder or sequence of real frames to calibrate on (default: the images of "
                            "data.train_split)")
    build.add_argument("--calibration-frames", type=int, default=256, help="int8: frames to calibrate on")
    build.add_argument("--out", metavar="FILE", help="also copy the plan (and its .json) here")
    build.add_argument("--rebuild", action="store_true", help="build even when the cache has the plan")
    build.add_argument("--fp16-onnx", metavar="FILE", help="only write the FP16 ONNX (checked against the fp32 one "
                                                           "in ONNX Runtime) and stop")
    build.add_argument("--int8-onnx", metavar="FILE",
                       help="only write the INT8 ONNX with Q/DQ nodes (engines/onnx_int8.py; calibrated as int8 plans "
                            "are, at --input-size; checked against the fp32 one in ONNX Runtime) and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = load_train_config(args.config, args.overrides)
        try:
            import torch  # noqa: F401  (the train extra)
            import dadaptation  # noqa: F401
        except ImportError as err:
            raise UserError(f"train.py needs the train extra (torch, dadaptation, onnx, matplotlib): "
                            f"pip install -e '.[train]' ({err})") from None
        return {"train": train, "evaluate": evaluate, "export": export, "release": release,
                "build-engine": build_engine}[args.command](args, config)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def train(args: argparse.Namespace, config: TrainConfig) -> int:
    from training.loop import Trainer

    result = Trainer(config, resume=args.resume, init=args.init).run()
    best = result.best
    print(f"{'stopped' if result.interrupted else 'finished'} at iteration {result.iteration}; outputs in "
          f"{result.run_dir}" + (f"; best.pt: epoch {best['epoch']}, val {best['metric']} {best['value']:.4f}"
                                 if best else "; no val split: use last.pt"), file=sys.stderr)
    return EXIT_INTERRUPTED if result.interrupted else 0


def evaluate(args: argparse.Namespace, config: TrainConfig) -> int:
    from training.evaluate import (detector_candidates, metrics, pd_at_false_alarms, predict, score_split,
                                   write_evaluation)
    from training.loop import resolve_device
    from training.splits import evaluation_set

    device = resolve_device(config.loop.device)
    detector, contents = load_trained_detector(config, args.checkpoint)
    detector.to(device)
    model_input = detector.config.input
    test_set = evaluation_set(config.data, args.split, previous_frames=model_input.previous_frames,
                              resize_factor=model_input.resize_factor, frame_spacing=model_input.frame_spacing)
    settings = config.evaluation
    detections = predict(detector_candidates(detector), test_set, batch_size=config.loop.batch_size,
                         num_workers=config.loop.num_workers, device=device, nms_iou=settings.nms_iou,
                         max_detections=settings.max_detections, label=f"evaluate {args.split}")
    result = score_split(test_set, detections)
    scores = metrics(result, pd_at_false_alarms(test_set, detections, settings.false_alarms_per_image))
    info = {"model": detector.config.name, "checkpoint": str(args.checkpoint), "epoch": contents.get("epoch"),
            "iteration": contents.get("iteration"), "input_size": config.data.input_size,
            "resize": config.data.resize, "false_alarms_per_image": settings.false_alarms_per_image}
    out_dir = Path(args.out) if args.out else Path(args.checkpoint).parent
    json_path, png_path = write_evaluation(result, scores, out_dir, args.split, info)
    pd = "none" if scores["pd_at_fa"] is None else f"{scores['pd_at_fa']:.4f}"
    print(f"{args.split}: mAP07 {result.ap_11point:.4f}  mAP12 {result.ap_area:.4f}  recall {result.recall:.4f}  "
          f"Pd {pd} at {settings.false_alarms_per_image:g} false alarms per image  ({len(test_set)} images, "
          f"{result.num_gt} gt, {result.num_detections} detections); wrote {json_path} and {png_path}",
          file=sys.stderr)
    return 0


def export(args: argparse.Namespace, config: TrainConfig) -> int:
    from training.export import export_and_check

    detector, _ = load_trained_detector(config, args.checkpoint)
    width, height = config.data.input_size
    frame, source = verification_frame(config)
    dynamic = args.dynamic_size or config.data.resize == "factor"  # the engine resizes each frame by the factor
    check = export_and_check(detector, Path(args.out), None if dynamic else (height, width), frame)
    print(f"wrote {args.out}; ONNX Runtime vs torch on {source}: max |difference| {check.max_score_difference:.3g} "
          f"in scores, {check.max_box_difference:.3g} px in boxes ({check.scored_candidates} scored candidates)",
          file=sys.stderr)
    return 0


def build_engine(args: argparse.Namespace, config: TrainConfig) -> int:
    from engines.config import DetectorConfig
    from engines.model_files import ModelFiles
    from engines.onnx_graph import load_onnx, tensorrt_problems
    from pipeline.schema import build

    onnx = ModelFiles.find(args.onnx).onnx
    if onnx is None or not onnx.is_file():
        raise UserError(f"--onnx {args.onnx}: no ONNX file there (give an .onnx written by train.py export, or a "
                        "released model folder holding model.onnx)")
    model = load_onnx(onnx)
    problems = tensorrt_problems(model)
    if problems:
        raise UserError(f"{onnx} cannot be built by TensorRT: " + "; ".join(problems))
    if args.fp16_onnx:
        from engines.onnx_fp16 import write_fp16_onnx

        difference = write_fp16_onnx(onnx, Path(args.fp16_onnx))
        print(f"wrote {args.fp16_onnx}; its best scores on a noise frame differ from the fp32 model's by at most "
              f"{difference:.2g}", file=sys.stderr)
        return 0
    options = {"precision": args.precision, "max_batch": args.max_batch, "calibration": args.calibration,
               "calibration_frames": args.calibration_frames}
    if args.input_size:
        options["input_size"] = parse_size(args.input_size)
    if args.cache_dir:
        options["cache_dir"] = args.cache_dir
    detector_config = build(DetectorConfig, {"engine": "tensorrt", "weights": str(onnx), "batch_size": args.batch_size,
                                             "tensorrt": options}, "detector")
    if args.int8_onnx:
        difference = write_int8(onnx, Path(args.int8_onnx), config, detector_config,
                                int8_input_size(onnx, detector_config))
        print(f"wrote {args.int8_onnx}; its best scores on a calibration frame differ from the fp32 model's by at most "
              f"{difference:.2g}", file=sys.stderr)
        return 0
    from engines.tensorrt_backend import ensure_plan, import_tensorrt, onnx_precision, open_buffers, tensorrt_major

    trt = import_tensorrt()
    buffers = open_buffers()
    frames = int8_onnx = None
    if args.precision == "int8" and onnx_precision(model) == "fp32":
        if tensorrt_major(trt) >= 11:  # strongly typed: int8 only from Q/DQ nodes in the ONNX
            onnx = int8_onnx = cached_int8_onnx(onnx, config, detector_config, args.rebuild)
            detector_config = replace(detector_config, weights=str(onnx))
        elif args.calibration is None:
            frames = calibration_frames(config, args.calibration_frames)
    record = ensure_plan(onnx, detector_config, buffers, calibration=frames, rebuild=args.rebuild)
    if args.out:
        import shutil

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record.plan, out)
        shutil.copyfile(record.sidecar, out.with_suffix(".json"))
    print(f"TensorRT {record.key.tensorrt} {record.key.precision} plan for {record.key.gpu}: {record.plan}"
          + (f" (copied to {args.out})" if args.out else "") + f"; profile min {list(record.key.profile.min)}, "
          f"opt {list(record.key.profile.opt)}, max {list(record.key.profile.max)}"
          + (f"; built from the INT8 ONNX {int8_onnx}" if int8_onnx else ""), file=sys.stderr)
    return 0


def parse_size(text: str) -> list[int]:
    """'512x640' -> [512, 640] (height, width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--input-size {text!r}: expected HEIGHTxWIDTH, e.g. 512x640") from None
    return [height, width]


def write_int8(onnx: Path, out: Path, config: TrainConfig, detector_config,
               input_size: tuple[int, int]) -> float:
    """Write the INT8 (Q/DQ) ONNX of ``onnx`` (engines/onnx_int8.py), calibrated on the frames TensorRT 10's
    calibrator would use, at ``input_size`` (int8_input_size); return write_int8_onnx's check."""
    from engines.onnx_int8 import write_int8_onnx
    from engines.tensorrt_backend import read_calibration_frames

    options = detector_config.tensorrt
    frames = (read_calibration_frames(options) if options.calibration
              else calibration_frames(config, options.calibration_frames))
    return write_int8_onnx(onnx, out, frames, input_size)


def int8_input_size(onnx: Path, detector_config) -> tuple[int, int]:
    """(height, width) INT8 calibration runs at: the plan profile's optimum (detector.tensorrt.input_size for a
    dynamic-size ONNX, else its own size), as TensorRT 10's calibrator."""
    from engines.onnxruntime_backend import contract_spec
    from engines.tensorrt_backend import plan_profile

    profile = plan_profile(contract_spec(onnx, detector_config), detector_config.tensorrt, detector_config.batch_size)
    return profile.opt[2], profile.opt[3]


def cached_int8_onnx(onnx: Path, config: TrainConfig, detector_config, rebuild: bool) -> Path:
    """The INT8 ONNX TensorRT 11 builds int8 plans of ``onnx`` from: kept in the engine cache beside the plans, named
    by the fp32 ONNX's hash and the calibration (source, frames, size), and written only when missing or on
    --rebuild, since calibration takes minutes."""
    import hashlib

    from engines.engine_cache import file_sha256

    options = detector_config.tensorrt
    source = options.calibration or f"{config.data.root_path.resolve()} {config.data.train_split}"
    size = int8_input_size(onnx, detector_config)
    calibration = f"{file_sha256(onnx)} {source} {options.calibration_frames} {size}"
    name = onnx.parent.name if onnx.stem == "model" else onnx.stem
    digest = hashlib.sha256(calibration.encode()).hexdigest()[:16]
    path = Path(options.cache_dir).expanduser() / f"{name}-int8-{digest}.onnx"
    if rebuild or not path.is_file():
        write_int8(onnx, path, config, detector_config, size)
    return path


def calibration_frames(config: TrainConfig, count: int) -> list[np.ndarray]:
    """Up to ``count`` images of data.train_split, evenly spread, for INT8 calibration."""
    from training.densesirst import DenseSirst

    if not config.data.root_path.is_dir():
        raise UserError(f"int8 calibration needs real frames: give --calibration SOURCE (data.root "
                        f"{config.data.root_path} is not there)")
    dataset = DenseSirst(config.data.root_path, config.data.train_split, with_masks=False)
    step = max(1, len(dataset) // count)
    return [dataset[i].image for i in range(0, len(dataset), step)][:count]


def release(args: argparse.Namespace, config: TrainConfig) -> int:
    from training.release import release_model

    detector, _ = load_trained_detector(config, args.checkpoint)
    frame, source = verification_frame(config)
    check = release_model(detector, config, Path(args.checkpoint), Path(args.out), frame)
    print(f"released {args.checkpoint} into {args.out}; ONNX Runtime vs torch on {source}: max |difference| "
          f"{check.max_score_difference:.3g} in scores, {check.max_box_difference:.3g} px in boxes", file=sys.stderr)
    return 0


def load_trained_detector(config: TrainConfig, checkpoint: str):
    """The config's model with the checkpoint's weights, in eval mode, and the checkpoint's contents."""
    from models.detector import build_detector
    from training.checkpoint import load_model_weights, read_checkpoint

    detector = build_detector(config.model_config())
    contents = read_checkpoint(checkpoint)
    load_model_weights(detector, contents, checkpoint, detector.config.name)
    return detector.eval(), contents


def verification_frame(config: TrainConfig) -> tuple[np.ndarray, str]:
    """The first image of data.test_split (for clips: the 11th frame of its first clip, with the model's previous
    frames before it as [F, H, W] for a multi-frame model), or seeded noise of the input size without the data."""
    from training.densesirst import DenseSirst
    from training.sequences import ClipSequences, read_clip_split

    model_input = config.model_config().get("input", {})
    previous = model_input.get("previous_frames", 0)
    if config.data.kind == "clips" and config.data.clips_root_path.is_dir():
        clip = read_clip_split(config.data.clip_split_path)[config.data.test_split][0]
        sequences = ClipSequences(config.data.clips_root_path, [clip], previous,
                                  frame_spacing=model_input.get("frame_spacing", 1))
        index = min(10, len(sequences) - 1)
        frames = sequences[index].frames
        return (frames if previous else frames[0]), f"clip {clip} frame {index + 1}"
    if config.data.kind == "densesirst" and config.data.root_path.is_dir():
        dataset = DenseSirst(config.data.root_path, config.data.test_split, with_masks=False)
        return dataset[0].image, f"{config.data.test_split} image {dataset.ids[0]}"
    width, height = config.data.input_size
    shape = (previous + 1, height, width) if previous else (height, width)
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    return frame, "a noise frame (the data set is not found)"
