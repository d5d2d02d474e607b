"""TensorRT engine: builds a plan from the contract ONNX (cached, engines/engine_cache.py) and runs it on an NVIDIA
GPU with the name-based tensor API (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``).

Versions: TensorRT 10 and 11, imported only here. Precision (``detector.tensorrt.precision``):
- TensorRT 10 builds an fp32 ONNX weakly typed, with the FP16 flag for fp16, and INT8 + FP16 for int8, calibrated
  by an entropy calibrator (IInt8EntropyCalibrator2) on real frames (``detector.tensorrt.calibration``);
- TensorRT 11 is strongly typed only: fp16 builds an FP16 copy of the ONNX (engines/onnx_fp16.py), int8 needs an
  ONNX that already holds Q/DQ nodes (explicit quantisation: ``train.py build-engine --precision int8`` or
  ``--int8-onnx`` writes one, engines/onnx_int8.py);
- an ONNX that is already fp16 or quantised is built strongly typed on both.
Optimisation profile: batch 1 .. ``max_batch`` tuned for ``detector.batch_size`` (a fixed batch stays fixed);
frames per input fixed at the model's F (1, or k + 1 for a multi-frame model, whose streams' previous frames the
engine keeps: engines/frames.py FrameHistory); dynamic height / width from ``size_divisor`` up to ``input_size``
(default 512 x 640).

Device buffers are torch CUDA tensors (pre-processing runs on the GPU, engines/preprocess.py) or, without torch,
cuda-bindings allocations fed by host pre-processing; pycuda is not used (no wheels, needs a CUDA toolkit).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from engines.config import DetectorConfig, TensorRTConfig
from engines.engine_cache import PlanCache, PlanKey, PlanRecord, Profile, file_sha256, mismatch, read_record, \
    write_record
from engines.frames import FrameHistory, check_images
from engines.model_files import ModelFiles
from engines.onnxruntime_backend import contract_spec
from engines.postprocess import check_raw_outputs, detect_in_chunks
from engines.preprocess import InputSpec, prepare_numpy, prepare_torch
from pipeline.errors import UserError
from pipeline.types import Detections

log = logging.getLogger(__name__)

INPUT, OUTPUTS = "images", ("boxes", "scores")
MIN_TENSORRT_MAJOR = 10
CALIBRATION_BATCH = 8


# ---------------------------------------------------------------------------------------------------------------
# What to build: pure decisions, testable without TensorRT

@dataclass(frozen=True)
class BuildRecipe:
    """How TensorRT builds a plan of the requested precision from an ONNX of a given kind."""

    strongly_typed: bool  # precision from the ONNX's tensor types
    flags: tuple[str, ...] = ()  # BuilderFlag names (TensorRT 10, weakly typed)
    calibrate: bool = False  # INT8 entropy calibration on real frames (TensorRT 10)
    convert_fp16: bool = False  # build from an FP16 copy of the ONNX (engines/onnx_fp16.py)


def onnx_precision(model) -> str:
    """'int8' for an ONNX with Q/DQ nodes (explicitly quantised), 'fp16' for one with fp16 weights, else 'fp32'."""
    from onnx import TensorProto

    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node):
        return "int8"
    if any(tensor.data_type == TensorProto.FLOAT16 for tensor in model.graph.initializer):
        return "fp16"
    return "fp32"


def build_recipe(precision: str, tensorrt_major: int, onnx_kind: str) -> BuildRecipe:
    """The build for ``precision`` on TensorRT ``tensorrt_major`` from an ONNX of kind ``onnx_kind``
    (onnx_precision); UserError for a combination that cannot be built."""
    if onnx_kind != "fp32":
        if precision != onnx_kind:
            raise UserError(f"the ONNX is already {onnx_kind} (its precision is in its tensor types), so it builds "
                            f"only as {onnx_kind}: set detector.tensorrt.precision (--precision) to {onnx_kind}, or "
                            "give the fp32 ONNX")
        return BuildRecipe(strongly_typed=True)
    if precision == "fp32":
        return BuildRecipe(strongly_typed=tensorrt_major >= 11)
    if tensorrt_major >= 11:
        if precision == "int8":
            raise UserError("TensorRT 11 takes INT8 only from Q/DQ nodes in the ONNX: build the plan with train.py "
                            "build-engine --precision int8 (it quantises on real frames), or write a Q/DQ ONNX with "
                            "--int8-onnx FILE and run that; or build fp16")
        return BuildRecipe(strongly_typed=True, convert_fp16=True)
    if precision == "fp16":
        return BuildRecipe(strongly_typed=False, flags=("FP16",))
    return BuildRecipe(strongly_typed=False, flags=("INT8", "FP16"), calibrate=True)


def plan_profile(spec: InputSpec, options: TensorRTConfig, batch_size: int) -> Profile:
    """The optimisation profile of 'images' for an ONNX whose input is ``spec`` (module docs)."""
    if spec.batch:
        batches = (spec.batch,) * 3
    else:
        batches = (1, min(batch_size, options.max_batch), options.max_batch)
    if spec.height and spec.width:
        sizes = [(spec.height, spec.width)] * 3
    else:
        largest = spec.layout([tuple(options.input_size)])
        low = (spec.height or spec.size_divisor, spec.width or spec.size_divisor)
        sizes = [low, (largest.height, largest.width), (largest.height, largest.width)]
    return Profile(*((n, spec.frames, h, w) for n, (h, w) in zip(batches, sizes)))


# ---------------------------------------------------------------------------------------------------------------
# TensorRT and the GPU

def import_tensorrt():
    """The tensorrt module (10 or newer), or a UserError saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise UserError(f"TensorRT is not installed ({err}): pip install -e '.[tensorrt]' on a machine with an "
                        "NVIDIA GPU and driver") from None
    if tensorrt_major(trt) < MIN_TENSORRT_MAJOR:
        raise UserError(f"TensorRT {trt.__version__} is too old: this engine needs {MIN_TENSORRT_MAJOR} or newer "
                        "(pip install -e '.[tensorrt]')")
    return trt


def tensorrt_major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def make_logger(trt):
    """A TensorRT logger that keeps errors (to explain failures) and passes warnings on to Python logging."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, message):
            level = int(severity)
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(message)
                log.error("TensorRT: %s", message)
            elif level == int(trt.ILogger.Severity.WARNING):
                log.info("TensorRT: %s", message)

    return Logger()


class TorchBuffers:
    """Device memory as torch CUDA tensors on one CUDA stream; frames are pre-processed on the GPU."""

    def __init__(self):
        import torch

        self.torch, self.device = torch, torch.device("cuda")
        self.stream = torch.cuda.Stream()
        self.tensors: dict[str, object] = {}

    @property
    def stream_handle(self) -> int:
        return self.stream.cuda_stream

    def gpu_name(self) -> str:
        major, minor = self.torch.cuda.get_device_capability()
        return f"{self.torch.cuda.get_device_name()} (sm_{major}{minor})"

    def upload_frames(self, frames: Sequence[np.ndarray], spec: InputSpec, padded_batch: int,
                      dtype: np.dtype) -> tuple[int, np.ndarray]:
        with self.torch.cuda.stream(self.stream):
            batch, scales = prepare_torch(frames, spec, padded_batch, self.device, _torch_dtype(self.torch, dtype))
        self.tensors[INPUT] = batch
        return batch.data_ptr(), scales

    def upload_array(self, name: str, array: np.ndarray) -> int:
        with self.torch.cuda.stream(self.stream):
            self.tensors[name] = self.torch.from_numpy(array).to(self.device, non_blocking=False)
        return self.tensors[name].data_ptr()

    def output(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        tensor = self.tensors.get(name)
        if tensor is None or tuple(tensor.shape) != shape or tensor.dtype != _torch_dtype(self.torch, dtype):
            with self.torch.cuda.stream(self.stream):  # memory of the stream TensorRT writes it on
                tensor = self.tensors[name] = self.torch.empty(shape, dtype=_torch_dtype(self.torch, dtype),
                                                               device=self.device)
        return tensor.data_ptr()

    def download(self, names: Sequence[str]) -> list[np.ndarray]:
        self.stream.synchronize()
        return [self.tensors[name].float().cpu().numpy() for name in names]


class CudaBindingsBuffers:
    """Device memory from cuda-bindings (cudaMalloc / cudaMemcpyAsync) on one stream, where torch is absent;
    frames are pre-processed on the host."""

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python before 12.6
            except ImportError as err:
                raise UserError(f"engine 'tensorrt' needs torch or cuda-bindings for device memory ({err}): "
                                "pip install -e '.[tensorrt]'") from None
        self.cudart = cudart
        self.stream = self._call(cudart.cudaStreamCreate())
        self.device_buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)
        self.hosts: dict[str, np.ndarray] = {}

    def _call(self, result):
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != self.cudart.cudaError_t.cudaSuccess:
            raise UserError(f"CUDA call failed: {self.cudart.cudaGetErrorName(error)[1].decode()}")
        return values[0] if len(values) == 1 else values

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def gpu_name(self) -> str:
        device = self._call(self.cudart.cudaGetDevice())
        properties = self._call(self.cudart.cudaGetDeviceProperties(device))
        name = properties.name.decode() if isinstance(properties.name, bytes) else str(properties.name)
        return f"{name.rstrip(chr(0))} (sm_{properties.major}{properties.minor})"

    def _device(self, name: str, nbytes: int) -> int:
        pointer, size = self.device_buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                self._call(self.cudart.cudaFree(pointer))
            pointer, size = int(self._call(self.cudart.cudaMalloc(nbytes))), nbytes
            self.device_buffers[name] = (pointer, size)
        return pointer

    def upload_frames(self, frames: Sequence[np.ndarray], spec: InputSpec, padded_batch: int,
                      dtype: np.dtype) -> tuple[int, np.ndarray]:
        batch, scales = prepare_numpy(frames, spec, padded_batch)
        return self.upload_array(INPUT, batch.astype(dtype, copy=False)), scales

    def upload_array(self, name: str, array: np.ndarray) -> int:
        self.hosts[name] = np.ascontiguousarray(array)  # kept alive until the asynchronous copy has run
        pointer = self._device(name, array.nbytes)
        self._call(self.cudart.cudaMemcpyAsync(pointer, self.hosts[name].ctypes.data, array.nbytes,
                                               self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        return pointer

    def output(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        self.hosts[name] = np.empty(shape, dtype)
        return self._device(name, self.hosts[name].nbytes)

    def download(self, names: Sequence[str]) -> list[np.ndarray]:
        for name in names:
            host = self.hosts[name]
            self._call(self.cudart.cudaMemcpyAsync(host.ctypes.data, self.device_buffers[name][0], host.nbytes,
                                                   self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        self._call(self.cudart.cudaStreamSynchronize(self.stream))
        return [self.hosts[name].astype(np.float32, copy=False) for name in names]

    def __del__(self):
        for pointer, _ in getattr(self, "device_buffers", {}).values():
            self.cudart.cudaFree(pointer)


def open_buffers() -> TorchBuffers | CudaBindingsBuffers:
    """Torch CUDA tensors when torch is installed, else cuda-bindings; UserError without a CUDA GPU."""
    from engines.availability import cuda_available, installed

    if not cuda_available():
        raise UserError("engine 'tensorrt' needs an NVIDIA GPU with a working CUDA driver, and none was found; use "
                        "engine 'onnxruntime' (CPU) or 'auto'")
    return TorchBuffers() if installed("torch") else CudaBindingsBuffers()


def _torch_dtype(torch, dtype: np.dtype):
    return {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16,
            np.dtype(np.int32): torch.int32, np.dtype(np.int64): torch.int64,
            np.dtype(np.bool_): torch.bool}[np.dtype(dtype)]


# ---------------------------------------------------------------------------------------------------------------
# Building plans

def ensure_plan(onnx: Path, config: DetectorConfig, buffers, *, calibration: Sequence[np.ndarray] | None = None,
                rebuild: bool = False) -> PlanRecord:
    """The cached plan for ``onnx`` under ``config`` (detector.batch_size and detector.tensorrt), built now when
    the cache has none for this GPU and TensorRT version; stale plans of the same model are named in the log.

    calibration: raw grey frames for INT8 calibration on TensorRT 10 (default: read from
    detector.tensorrt.calibration). rebuild: build even on a cache hit (replacing it).
    """
    trt = import_tensorrt()
    options = config.tensorrt
    spec = contract_spec(onnx, config)
    key = PlanKey(file_sha256(onnx), trt.__version__, buffers.gpu_name(), options.precision,
                  plan_profile(spec, options, config.batch_size))
    cache = PlanCache(options.cache_dir)
    found = cache.lookup(key)
    if found.hit is not None and not rebuild:
        return found.hit
    for record, reason in found.stale:
        log.warning("cached TensorRT plan %s was %s: building a new plan for this machine", record.plan, reason)
    from engines.onnx_graph import load_onnx, tensorrt_problems

    model = load_onnx(onnx)
    problems = tensorrt_problems(model)
    if problems:
        raise UserError(f"{onnx} cannot be built by TensorRT: " + "; ".join(problems))
    recipe = build_recipe(options.precision, tensorrt_major(trt), onnx_precision(model))
    if recipe.convert_fp16:
        from engines.onnx_fp16 import convert_to_fp16

        model = convert_to_fp16(model)
    frames = None
    if recipe.calibrate:
        frames = calibration if calibration is not None else read_calibration_frames(options)
    plan_path = cache.path_for(key, onnx.parent.name if onnx.stem == "model" else onnx.stem)
    log.warning("building a TensorRT %s plan from %s (TensorRT %s, %s; profile %s): this takes minutes",
                options.precision, onnx, key.tensorrt, key.gpu, key.profile)
    started = time.perf_counter()
    plan = build_plan(trt, model.SerializeToString(), recipe, key.profile, options, buffers, spec, frames,
                      calibration_cache=plan_path.with_suffix(".calibration"))
    record = write_record(plan, PlanRecord(plan_path, key, spec, str(onnx.resolve()),
                                           {"build_s": round(time.perf_counter() - started, 1),
                                            "strongly_typed": recipe.strongly_typed}))
    log.warning("wrote %s (%.0f s)", record.plan, record.extra["build_s"])
    return record


def build_plan(trt, onnx_bytes: bytes, recipe: BuildRecipe, profile: Profile, options: TensorRTConfig, buffers,
               spec: InputSpec, calibration: Sequence[np.ndarray] | None, calibration_cache: Path) -> bytes:
    """A serialized plan of the ONNX (bytes) built as ``recipe`` says for ``profile``; INT8 calibration feeds
    ``calibration`` frames pre-processed by ``spec``."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if recipe.strongly_typed and tensorrt_major(trt) < 11:  # always on (and the flag ignored) from TensorRT 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT's ONNX parser rejected the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    shapes = builder.create_optimization_profile()
    shapes.set_shape(INPUT, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(shapes)
    for flag in recipe.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if recipe.calibrate:
        calibration_shape = (min(CALIBRATION_BATCH, profile.max[0]), *profile.opt[1:])
        calibration_profile = builder.create_optimization_profile()
        calibration_profile.set_shape(INPUT, calibration_shape, calibration_shape, calibration_shape)
        config.set_calibration_profile(calibration_profile)
        batches = calibration_batches(calibration or [], spec, calibration_shape)
        config.int8_calibrator = make_entropy_calibrator(trt, batches, calibration_shape[0], buffers,
                                                         calibration_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError("TensorRT could not build the plan: " + ("; ".join(logger.errors[-3:]) or "no reason given"))
    return bytes(serialized)


def read_calibration_frames(options: TensorRTConfig) -> list[np.ndarray]:
    """``calibration_frames`` grey frames spread evenly over the source ``options.calibration``."""
    from pipeline.sources import SourceConfig, open_source

    if options.calibration is None:
        raise UserError("INT8 on TensorRT 10 calibrates on real frames: set detector.tensorrt.calibration to a "
                        "video, image folder or MOTChallenge sequence of your scenes (or build fp16)")
    source = open_source(SourceConfig(kind="auto", path=options.calibration))
    try:
        total = source.num_frames
        step = max(1, total // options.calibration_frames) if total else 1
        frames = [frame for index, frame in enumerate(source) if index % step == 0][:options.calibration_frames]
    finally:
        source.close()
    if len(frames) < CALIBRATION_BATCH:
        raise UserError(f"calibration source {options.calibration} gave {len(frames)} frames; INT8 calibration "
                        f"needs at least {CALIBRATION_BATCH}")
    return frames


def calibration_batches(frames: Sequence[np.ndarray], spec: InputSpec,
                        shape: tuple[int, int, int, int]) -> Iterator[np.ndarray]:
    """Network inputs of ``shape`` for calibration: the frames resized to its size and normalised as at run time
    (calibration needs the distribution of the activations, which resizing keeps), a multi-frame model's stacked
    as one stream's; a last partial batch is left out."""
    batch, _, height, width = shape
    fixed = replace(spec, batch=batch, height=height, width=width)
    items = FrameHistory(spec.frames, spec.frame_spacing).stacks(frames)
    for start in range(0, len(items) - batch + 1, batch):
        yield prepare_numpy(items[start:start + batch], fixed, batch)[0]


def make_entropy_calibrator(trt, batches: Iterator[np.ndarray], batch_size: int, buffers, cache: Path):
    """An IInt8EntropyCalibrator2 (TensorRT 10) that feeds ``batches`` through device memory and keeps its
    calibration table in ``cache`` (reused when the same model is rebuilt)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            batch = next(batches, None)
            return None if batch is None else [buffers.upload_array(INPUT, batch)]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, table):
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(bytes(table))

    return EntropyCalibrator()


# ---------------------------------------------------------------------------------------------------------------
# Running plans

class TensorRTDetector:
    """A TensorRT plan behind the Detector protocol (module docs). ``weights``: an ONNX (or a released model
    folder), whose plan is taken from the cache or built; or a plan with its sidecar, which is rebuilt from its
    ONNX (when that is still there) if it was built for another GPU or TensorRT version."""

    name = "tensorrt"

    def __init__(self, weights: str | Path, config: DetectorConfig | None = None):
        self.config = config or DetectorConfig(engine="tensorrt", weights=str(weights))
        trt = import_tensorrt()
        self.buffers = open_buffers()
        files = ModelFiles.find(weights)
        if files.plan is not None and (files.onnx is None or Path(weights).suffix.lower() in (".plan", ".engine")):
            record = self._given_plan(trt, files.plan)
        elif files.onnx is not None:
            record = ensure_plan(files.onnx, self.config, self.buffers)
        else:
            raise UserError(f"detector weights {weights}: engine 'tensorrt' needs an ONNX (or a plan built by "
                            f"train.py build-engine); found {files.describe()}")
        self.record, self.logger = record, make_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(record.plan.read_bytes())
        if self.engine is None and record.onnx and Path(record.onnx).is_file():
            log.warning("TensorRT %s could not load the plan %s (%s): rebuilding it", trt.__version__, record.plan,
                        "; ".join(self.logger.errors[-2:]) or "no reason given")
            record = self.record = ensure_plan(Path(record.onnx), self.config, self.buffers, rebuild=True)
            self.engine = self.runtime.deserialize_cuda_engine(record.plan.read_bytes())
        if self.engine is None:
            raise UserError(f"TensorRT {trt.__version__} cannot load the plan {record.plan} ("
                            f"{'; '.join(self.logger.errors[-2:]) or 'no reason given'}); rebuild it on this machine "
                            "with: python train.py build-engine --onnx MODEL.onnx")
        names = {self.engine.get_tensor_name(i): self.engine.get_tensor_mode(self.engine.get_tensor_name(i))
                 for i in range(self.engine.num_io_tensors)}
        if names.get(INPUT) != trt.TensorIOMode.INPUT or any(names.get(o) != trt.TensorIOMode.OUTPUT
                                                             for o in OUTPUTS):
            raise UserError(f"TensorRT plan {record.plan} has the tensors {sorted(names)}; the engine contract "
                            f"needs input {INPUT!r} and outputs {OUTPUTS}")
        self.dtypes = {name: np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))) for name in (INPUT, *OUTPUTS)}
        self.context = self.engine.create_execution_context()
        self.spec, self.profile = record.spec, record.key.profile
        self.frames = self.spec.frames
        self.history = FrameHistory(self.frames, self.spec.frame_spacing)

    def _given_plan(self, trt, plan: Path) -> PlanRecord:
        """The record of a plan named by the user, rebuilt (from its ONNX, into the cache) when it was built for
        another GPU or TensorRT version."""
        record = read_record(plan)
        if record is None:
            raise UserError(f"TensorRT plan {plan}: missing or unreadable {plan.with_suffix('.json').name} beside it "
                            "(written by train.py build-engine); rebuild the plan from the ONNX")
        current = replace(record.key, tensorrt=trt.__version__, gpu=self.buffers.gpu_name())
        reason = mismatch(record.key, current)
        if reason is None:
            return record
        if record.onnx and Path(record.onnx).is_file():
            log.warning("TensorRT plan %s was %s: rebuilding it from %s", plan, reason, record.onnx)
            profile = record.key.profile  # the same precision and profile, for this machine
            largest_frame = [math.ceil(side / record.spec.resize_factor) for side in profile.max[2:]]
            options = replace(self.config.tensorrt, precision=record.key.precision, max_batch=profile.max[0],
                              input_size=largest_frame)
            return ensure_plan(Path(record.onnx), replace(self.config, tensorrt=options, batch_size=profile.opt[0]),
                               self.buffers)
        raise UserError(f"TensorRT plan {plan} was {reason}, and its ONNX ({record.onnx}) is not there to rebuild "
                        "it from; rebuild it on this machine with: python train.py build-engine --onnx MODEL.onnx")

    def detect(self, images: Sequence[np.ndarray], streams: Sequence[str] | None = None,
               restarts: Sequence[int] | None = None) -> list[Detections]:
        """Detections of each frame; ``streams`` and ``restarts`` matter to multi-frame models only
        (engines/base.py MultiFrameDetector)."""
        check_images(images, self.name)
        return detect_in_chunks(self.history.stacks(images, streams, restarts),
                                self.spec.batch or self.profile.max[0], self.spec.batch, self.config, self.infer)

    def infer(self, frames: list[np.ndarray], padded_batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs boxes [padded_batch, K, 4] and scores [padded_batch, K] on the host, and the frames'
        scales: pre-processing, inference and the copies all on one CUDA stream; ``frames``: frames [H, W] or a
        multi-frame model's stacks [F, H, W]."""
        layout = self.spec.layout([f.shape[-2:] for f in frames])
        shape = (padded_batch, self.spec.frames, layout.height, layout.width)
        if not self.profile.contains(shape):
            raise UserError(f"a batch of shape {list(shape)} is outside the TensorRT plan's profile (min "
                            f"{list(self.profile.min)}, max {list(self.profile.max)}); for larger frames raise "
                            "detector.tensorrt.input_size (the plan is rebuilt)")
        address, scales = self.buffers.upload_frames(frames, self.spec, padded_batch, self.dtypes[INPUT])
        self.context.set_input_shape(INPUT, shape)
        self.context.set_tensor_address(INPUT, address)
        for name in OUTPUTS:
            output_shape = tuple(self.context.get_tensor_shape(name))
            self.context.set_tensor_address(name, self.buffers.output(name, output_shape, self.dtypes[name]))
        if not self.context.execute_async_v3(self.buffers.stream_handle):
            raise UserError(f"TensorRT failed to run the plan {self.record.plan} on a batch of shape {list(shape)}: "
                            + ("; ".join(self.logger.errors[-2:]) or "no reason given"))
        boxes, scores = self.buffers.download(OUTPUTS)
        check_raw_outputs(boxes, scores, padded_batch, str(self.record.plan))
        return boxes, scores, scales

    def close(self) -> None:
        self.context = self.engine = self.runtime = None
