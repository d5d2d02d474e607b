#!/usr/bin/env python3
"""Speed of the model engines: latency and throughput per backend and precision, as a fraction of the machine's peak.

For each released model (weights/*/model.onnx; or --onnx PATH; with neither, an untrained configs/models/
bafenet_lite.yaml exported to a temporary folder, for development), at 512x512 and 640x512 frames (synthetic
uint16 scenes):
- latency p50 / p99 of ``detect`` on one frame (pre-processing, inference, host NMS: what the pipeline waits for);
- throughput (frames/s) of ``detect`` on batches of 1..32 frames;
- FLOPs per frame (2 x the multiply-accumulates of the Conv / MatMul / Gemm nodes of the ONNX, from its shapes,
  engines/onnx_graph.py) and the machine's peak for the same kind of work, measured here with the same runtime,
  precision and threads: a 3x3, 64 -> 64 channel convolution on a [4, 64, 128, 160] input. Each throughput is also
  given as achieved FLOP/s / that peak.
Backends: onnxruntime (CPU, fp32), torch (CPU fp32; CUDA fp16 and fp32), tensorrt (fp32, fp16; int8 with
--calibration). A backend that cannot run here is listed under "skipped" with the reason.
Usage: python benchmarks/engine_bench.py --json benchmarks/results/engine_bench.json [--backend onnxruntime torch]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import latencies_ms, machine  # noqa: E402
from engines import create_detector  # noqa: E402
from engines.availability import cuda_available, installed  # noqa: E402
from engines.config import DetectorConfig  # noqa: E402
from engines.onnx_graph import count_macs  # noqa: E402
from pipeline.errors import UserError  # noqa: E402
from pipeline.schema import build  # noqa: E402
from simulation import SyntheticScene, SyntheticSceneConfig  # noqa: E402

SIZES = ((512, 512), (640, 512))  # (width, height)
PEAK_INPUT, PEAK_CHANNELS, PEAK_KERNEL = (4, 64, 128, 160), 64, 3
CPU_GOAL_FPS = 30.0


def peak_macs() -> int:
    n, c, h, w = PEAK_INPUT
    return n * PEAK_CHANNELS * h * w * c * PEAK_KERNEL * PEAK_KERNEL


def median_seconds(run, repeats: int) -> float:
    return float(np.median(latencies_ms(lambda _: run(), repeats, warmup=1))) / 1e3


def conv_onnx(path: Path, fp16: bool = False) -> Path:
    """The peak workload as an ONNX: one 3x3 convolution (fp16 weights and I/O for fp16)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dtype, elem = (np.float16, TensorProto.FLOAT16) if fp16 else (np.float32, TensorProto.FLOAT)
    weight = np.random.default_rng(0).standard_normal((PEAK_CHANNELS, PEAK_INPUT[1], PEAK_KERNEL, PEAK_KERNEL))
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "peak",
                              [helper.make_tensor_value_info("x", elem, list(PEAK_INPUT))],
                              [helper.make_tensor_value_info("y", elem, None)],
                              [numpy_helper.from_array((0.05 * weight).astype(dtype), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def peak_onnxruntime(threads: int, repeats: int, folder: Path) -> float:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(conv_onnx(folder / "peak.onnx")), options,
                                           providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal(PEAK_INPUT).astype(np.float32)
    return 2 * peak_macs() / median_seconds(lambda: session.run(None, {"x": x}), repeats)


def peak_torch(device: str, precision: str, repeats: int) -> float:
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.float32
    memory = torch.channels_last if device == "cuda" else torch.contiguous_format
    x = torch.randn(PEAK_INPUT, device=device, dtype=dtype).contiguous(memory_format=memory)
    weight = torch.randn(PEAK_CHANNELS, PEAK_INPUT[1], PEAK_KERNEL, PEAK_KERNEL, device=device, dtype=dtype)
    weight = weight.contiguous(memory_format=memory)

    def run():
        with torch.inference_mode():
            torch.nn.functional.conv2d(x, weight, padding=1)
        if device == "cuda":
            torch.cuda.synchronize()

    return 2 * peak_macs() / median_seconds(run, repeats)


def peak_tensorrt(precision: str, repeats: int, folder: Path) -> float:
    """The convolution built by TensorRT at ``precision`` (fp32 / fp16) and timed through the same runtime calls."""
    import torch

    from engines.engine_cache import Profile
    from engines.onnx_graph import load_onnx
    from engines.tensorrt_backend import build_plan, build_recipe, import_tensorrt, make_logger, onnx_precision, \
        open_buffers, tensorrt_major

    trt = import_tensorrt()
    onnx_path = conv_onnx(folder / f"peak_{precision}.onnx", fp16=precision == "fp16")
    recipe = build_recipe(precision, tensorrt_major(trt), onnx_precision(load_onnx(onnx_path)))
    options = build(DetectorConfig, {}, "detector").tensorrt
    plan = build_plan(trt, onnx_path.read_bytes(), recipe, Profile(*[PEAK_INPUT] * 3), options, open_buffers(),
                      None, None, folder / "unused.calibration")
    engine = trt.Runtime(make_logger(trt)).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    dtype = torch.float16 if precision == "fp16" else torch.float32
    x = torch.randn(PEAK_INPUT, device="cuda", dtype=dtype)
    y = torch.empty((PEAK_INPUT[0], PEAK_CHANNELS, *PEAK_INPUT[2:]), device="cuda", dtype=dtype)
    context.set_tensor_address("x", x.data_ptr())
    context.set_tensor_address("y", y.data_ptr())
    stream = torch.cuda.Stream()

    def run():
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()

    return 2 * peak_macs() / median_seconds(run, repeats)


def backend_settings(backends: list[str], calibration: str | None) -> tuple[list[tuple[str, str, str]], dict]:
    """(backend, precision, device) triples that can run here, and {backend: reason} for those that cannot."""
    runs, skipped = [], {}
    for backend in backends:
        if backend == "onnxruntime":
            runs.append(("onnxruntime", "fp32", "cpu"))
        elif backend == "torch":
            if not installed("torch"):
                skipped["torch"] = "torch is not installed (the train extra)"
            elif cuda_available():
                runs += [("torch", "fp16", "cuda"), ("torch", "fp32", "cuda")]
            else:
                runs.append(("torch", "fp32", "cpu"))
        elif backend == "tensorrt":
            if not (installed("tensorrt") and cuda_available()):
                skipped["tensorrt"] = "needs TensorRT (the tensorrt extra) and an NVIDIA GPU"
            else:
                runs += [("tensorrt", p, "cuda") for p in ("fp32", "fp16", "int8") if p != "int8" or calibration]
                if not calibration:
                    skipped["tensorrt/int8"] = "INT8 calibrates on real frames: give --calibration SOURCE"
    return runs, skipped


def models(args, folder: Path) -> list[dict]:
    """The models to measure: released ones, --onnx files, or (neither) an untrained lite model exported here."""
    released = sorted((REPO / "weights").glob("*/model.onnx"))
    if released:
        return [{"name": p.parent.name, "weights": p.parent, "source": "released"} for p in released]
    if args.onnx:
        return [{"name": Path(p).stem, "weights": Path(p), "source": "--onnx"} for p in args.onnx]
    import torch
    import yaml

    from models.detector import build_detector
    from models.export import export_onnx

    config = yaml.safe_load((REPO / "configs" / "models" / "bafenet_lite.yaml").read_text())
    torch.manual_seed(0)
    detector = build_detector(config).eval()
    release = folder / "bafenet_lite"
    release.mkdir()
    export_onnx(detector, release / "model.onnx")  # dynamic height / width: both sizes run at their own size
    torch.save(detector.state_dict(), release / "model.pt")
    (release / "model.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return [{"name": "bafenet_lite", "weights": release,
             "source": "untrained configs/models/bafenet_lite.yaml, exported for development (speed only: its "
                       "scores stay below the threshold, so host NMS sees no candidates)"}]


def measure(detector, frames: list[np.ndarray], batches: list[int], latency_runs: int, repeats: int) -> dict:
    latencies = latencies_ms(lambda index: detector.detect([frames[index % len(frames)]]), latency_runs, warmup=3)
    throughput = []
    for batch in batches:
        seconds = median_seconds(lambda: detector.detect(frames[:batch]), repeats)
        throughput.append({"batch": batch, "ms_per_batch": round(1e3 * seconds, 2), "fps": round(batch / seconds, 2)})
        print(f"    batch {batch:2d}: {batch / seconds:8.2f} frames/s", flush=True)
    return {"latency_ms": {"p50": round(float(np.percentile(latencies, 50)), 2),
                           "p99": round(float(np.percentile(latencies, 99)), 2), "runs": latency_runs},
            "throughput": throughput}


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(model["name"], r) for model in result["models"] for r in model["results"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for name, r in rows:
        label = f"{name} {r['backend']} {r['precision']} {r['device']} {r['size']}"
        left.plot([t["batch"] for t in r["throughput"]], [t["fps"] for t in r["throughput"]], marker="o", label=label)
    left.set(xscale="log", xlabel="batch (frames)", ylabel="frames / s", title="throughput of detect()")
    left.set_xticks([t["batch"] for t in rows[0][1]["throughput"]] if rows else [])
    left.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    left.axhline(CPU_GOAL_FPS, color="grey", linestyle="--", linewidth=1, label=f"{CPU_GOAL_FPS:.0f} fps goal")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    labels = [f"{n}\n{r['backend']} {r['precision']}\n{r['size']}" for n, r in rows]
    right.bar(range(len(rows)), [100 * r["fraction_of_peak"] for _, r in rows], color="tab:blue")
    right.set_xticks(range(len(rows)), labels, fontsize=7)
    right.set(ylabel="% of the measured conv peak (best batch)", title="achieved FLOP/s / peak FLOP/s")
    right.grid(alpha=0.3, axis="y")
    fig.suptitle(f"engine_bench on {result['machine']['cpu']} ({result['machine']['cores']} cores)"
                 + (f", {result['machine']['gpu']}" if result["machine"].get("gpu") else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results (the PNG goes beside it)")
    parser.add_argument("--backend", nargs="+", default=["onnxruntime", "torch", "tensorrt"],
                        choices=["onnxruntime", "torch", "tensorrt"], help="backends to measure (default: all)")
    parser.add_argument("--onnx", nargs="+", help="ONNX files to measure when weights/ holds no released model")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32], help="throughput batches")
    parser.add_argument("--latency-runs", type=int, default=50, help="batch-1 calls timed for latency")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per batch size (median reported)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for ONNX Runtime and torch (0: each runtime's default, all cores)")
    parser.add_argument("--calibration", help="frames for TensorRT int8 (a video, image folder or sequence)")
    args = parser.parse_args()

    settings, skipped = backend_settings(args.backend, args.calibration)
    if installed("torch"):
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
    result = {"machine": machine(("onnxruntime", "torch", "tensorrt", "opencv-python-headless"),
                                 gpu=torch.cuda.get_device_name() if installed("torch") and cuda_available() else None),
              "command": "python benchmarks/engine_bench.py " + " ".join(sys.argv[1:]),
              "threads": args.threads or "runtime default", "peaks": {}, "models": [], "skipped": skipped}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for backend, precision, device in settings:
            name = f"{backend}/{precision}/{device}"
            try:
                if backend == "onnxruntime":
                    flops = peak_onnxruntime(args.threads, args.repeats * 3, folder)
                elif backend == "torch":
                    flops = peak_torch(device, precision, args.repeats * 3)
                else:
                    flops = peak_tensorrt(precision if precision != "int8" else "fp16", args.repeats * 3, folder)
            except UserError as err:
                skipped[name] = str(err)
                continue
            result["peaks"][name] = {"gflops_per_s": round(flops / 1e9, 2), "work": (
                f"{PEAK_KERNEL}x{PEAK_KERNEL} conv {PEAK_INPUT[1]}->{PEAK_CHANNELS} channels on {list(PEAK_INPUT)}")}
            print(f"peak {name}: {flops / 1e9:.1f} GFLOP/s", flush=True)
        for model in models(args, folder):
            entry = {"name": model["name"], "weights": str(model["weights"]), "source": model["source"],
                     "sizes": {}, "results": []}
            onnx_path = model["weights"] / "model.onnx" if model["weights"].is_dir() else model["weights"]
            for width, height in SIZES:
                frames = [SyntheticScene(SyntheticSceneConfig(width=width, height=height, frames=max(args.batches),
                                                              seed=1)).frame(i) for i in range(max(args.batches))]
                size = f"{width}x{height}"
                for backend, precision, device in settings:
                    name = f"{backend}/{precision}/{device}"
                    if name not in result["peaks"]:
                        continue
                    options = {"engine": backend, "weights": str(model["weights"]),
                               "onnxruntime": {"intra_op_threads": args.threads},
                               "torch": {"device": device, "precision": precision, "threads": args.threads},
                               "tensorrt": {"precision": precision, "max_batch": max(args.batches),
                                            "input_size": [height, width], "calibration": args.calibration}}
                    try:
                        detector = create_detector(build(DetectorConfig, options, "detector"))
                    except UserError as err:
                        skipped[f"{model['name']} {name} {size}"] = str(err)
                        continue
                    spec = detector.spec
                    layout = spec.layout([(height, width)])  # the model's resize_factor and padding included
                    network = (layout.height, layout.width)
                    if size not in entry["sizes"]:
                        macs = count_macs(onnx_path, *network)["total"]
                        entry["sizes"][size] = {"network_input_hw": list(network), "gflops_per_frame":
                                                round(2 * macs / 1e9, 3)}
                    print(f"{model['name']} {name} {size}:", flush=True)
                    measured = measure(detector, frames, args.batches, args.latency_runs, args.repeats)
                    detector.close()
                    best = max(t["fps"] for t in measured["throughput"])
                    achieved = best * entry["sizes"][size]["gflops_per_frame"] * 1e9
                    entry["results"].append({
                        "backend": backend, "precision": precision, "device": device, "size": size, **measured,
                        "best_fps": best, "achieved_gflops_per_s": round(achieved / 1e9, 2),
                        "fraction_of_peak": round(achieved / (result["peaks"][name]["gflops_per_s"] * 1e9), 4)})
                    print(f"    latency p50 {measured['latency_ms']['p50']} ms, p99 {measured['latency_ms']['p99']} "
                          f"ms; best {best} fps = {100 * entry['results'][-1]['fraction_of_peak']:.1f}% of peak",
                          flush=True)
            result["models"].append(entry)
    goal = {}
    for model in result["models"]:
        cpu = [r for r in model["results"] if r["device"] == "cpu" and r["size"] == "640x512"]
        if cpu:
            best = max(cpu, key=lambda r: -r["latency_ms"]["p50"])
            fps = round(1e3 / best["latency_ms"]["p50"], 2)
            goal[model["name"]] = {"backend": best["backend"], "fps_from_p50_latency": fps, "met": fps >= CPU_GOAL_FPS}
    if goal:
        result["cpu_goal"] = {"goal": f"640x512, batch 1, CPU >= {CPU_GOAL_FPS:.0f} fps (for the lite model)",
                              "models": goal}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
