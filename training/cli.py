"""`python train.py train | evaluate | export`: the trainer's command line. User mistakes print one `error:` line
and exit 2, as run_pipeline.py does; Ctrl-C during training saves last.pt and exits 130."""
from __future__ import annotations

import argparse
import sys
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
    commands = p.add_subparsers(dest="command", required=True, metavar="{train,evaluate,export}")
    train = commands.add_parser("train", parents=[common], help="train; outputs in runs/train/<name>/")
    train.add_argument("--resume", metavar="PATH", help="continue exactly from a last.pt / best.pt checkpoint")
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
                        help="dynamic height / width (frames run at their own size) instead of data.input_size")
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
        return {"train": train, "evaluate": evaluate, "export": export}[args.command](args, config)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def train(args: argparse.Namespace, config: TrainConfig) -> int:
    from training.loop import Trainer

    result = Trainer(config, resume=args.resume).run()
    best = result.best
    print(f"{'stopped' if result.interrupted else 'finished'} at iteration {result.iteration}; outputs in "
          f"{result.run_dir}" + (f"; best.pt: epoch {best['epoch']}, val {best['metric']} {best['value']:.4f}"
                                 if best else "; no val split: use last.pt"), file=sys.stderr)
    return EXIT_INTERRUPTED if result.interrupted else 0


def evaluate(args: argparse.Namespace, config: TrainConfig) -> int:
    from training.evaluate import detector_candidates, predict, score_split, write_evaluation
    from training.loop import resolve_device
    from training.splits import evaluation_set

    device = resolve_device(config.loop.device)
    detector, contents = load_trained_detector(config, args.checkpoint)
    detector.to(device)
    test_set = evaluation_set(config.data, args.split)
    settings = config.evaluation
    detections = predict(detector_candidates(detector), test_set, batch_size=config.loop.batch_size,
                         num_workers=config.loop.num_workers, device=device, nms_iou=settings.nms_iou,
                         max_detections=settings.max_detections, label=f"evaluate {args.split}")
    result = score_split(test_set, detections)
    info = {"model": detector.config.name, "checkpoint": str(args.checkpoint), "epoch": contents.get("epoch"),
            "iteration": contents.get("iteration"), "input_size": config.data.input_size,
            "resize": config.data.resize}
    out_dir = Path(args.out) if args.out else Path(args.checkpoint).parent
    json_path, png_path = write_evaluation(result, out_dir, args.split, info)
    print(f"{args.split}: mAP07 {result.ap_11point:.4f}  mAP12 {result.ap_area:.4f}  recall {result.recall:.4f}  "
          f"({len(test_set)} images, {result.num_gt} gt, {result.num_detections} detections); wrote {json_path} "
          f"and {png_path}", file=sys.stderr)
    return 0


def export(args: argparse.Namespace, config: TrainConfig) -> int:
    from training.export import export_and_check

    detector, _ = load_trained_detector(config, args.checkpoint)
    width, height = config.data.input_size
    frame, source = verification_frame(config)
    check = export_and_check(detector, Path(args.out), None if args.dynamic_size else (height, width), frame)
    print(f"wrote {args.out}; ONNX Runtime vs torch on {source}: max |difference| {check.max_score_difference:.3g} "
          f"in scores, {check.max_box_difference:.3g} px in boxes ({check.scored_candidates} scored candidates)",
          file=sys.stderr)
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
    """The first image of data.test_split, or a seeded noise frame of the input size when the data is absent."""
    from training.densesirst import DenseSirst

    if config.data.root_path.is_dir():
        dataset = DenseSirst(config.data.root_path, config.data.test_split, with_masks=False)
        return dataset[0].image, f"{config.data.test_split} image {dataset.ids[0]}"
    width, height = config.data.input_size
    frame = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    return frame, f"a noise frame (data.root {config.data.root_path} not found)"
