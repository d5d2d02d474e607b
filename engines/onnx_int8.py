"""An INT8 copy of a contract ONNX with QuantizeLinear / DequantizeLinear (Q/DQ) nodes, i.e. explicitly quantised:
what a strongly typed TensorRT (11, which takes int8 only from the ONNX) builds int8 plans from, and what ONNX Runtime
runs on the CPU to measure the int8 accuracy without a GPU (in float arithmetic on int8-rounded values, so there it
is slower than the fp32 model, not faster).

Written by ONNX Runtime's static quantiser in the form TensorRT takes:
- quantised: the inputs of every convolution, where NVIDIA places Q/DQ for TensorRT: activations per tensor, weights
  per output channel, int8 symmetric (TensorRT allows only zero points of 0). Outputs of convolutions are not
  quantised (TensorRT fuses bias, ReLU and additions into the convolution and requantises where the next one reads),
  biases stay float (TensorRT's parser rejects the int32 bias DequantizeLinear ONNX Runtime writes by default) and
  weights keep their float values behind a Q/DQ pair;
- float: everything else, in particular the box decoding and top-K after the last convolutions, which read their
  float outputs, so boxes keep sub-pixel steps and scores stay continuous;
- unchanged: the graph's input, outputs and metadata_props (mean, std, input_scale, size_divisor, model, frames), so
  every engine reads the file as it reads model.onnx. The graph is first simplified by ONNX Runtime's basic
  optimisations (constant folding, e.g. of the Identity nodes torch puts before shared weights, which the quantiser
  would otherwise treat as activations).
Calibration: entropy, as TensorRT 10's IInt8EntropyCalibrator2, so both TensorRT versions calibrate alike; min-max
and the 99.999th percentile kept the released model's val_v2 mAP as well, but entropy's detections were the closest to
the fp32 model's, and one bright frame cannot stretch its ranges as it stretches min-max's. It runs on real frames
through the engine's own pre-processing (engines/tensorrt_backend.py calibration_batches, the inputs TensorRT 10's
calibrator gets), one frame at a time, so memory stays flat (the activations of one 512 x 640 frame take about
180 MB, which quantize_static would otherwise hold for every frame).
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.errors import UserError
from pipeline.progress import ProgressLine

QUANTISED_OPS = ["Conv"]


def quantize_to_int8(onnx: Path, frames: Sequence[np.ndarray], input_size: tuple[int, int]):
    """A new onnx ModelProto: the fp32 contract ONNX ``onnx`` with Q/DQ nodes (module docs), calibrated on ``frames``
    (grey frames of one source, in order) resized to ``input_size`` (height, width; a fixed-size model's own size
    wins)."""
    from engines.onnx_graph import load_onnx
    from engines.onnxruntime_backend import OnnxRuntimeDetector
    from engines.tensorrt_backend import calibration_batches, onnx_precision

    original = load_onnx(onnx)  # first: it says how to install onnx, which the quantiser needs too
    import onnx as onnx_package
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    kind = onnx_precision(original)
    if kind != "fp32":
        raise UserError(f"{onnx} is already {kind}: INT8 quantisation starts from the fp32 ONNX (train.py export)")
    spec = OnnxRuntimeDetector(onnx).spec
    shape = (1, spec.frames, spec.height or input_size[0], spec.width or input_size[1])
    inputs = list(calibration_batches(frames, spec, shape))
    if not inputs:
        raise UserError("INT8 calibration got no frames: give a source of real frames (--calibration)")

    class OneAtATime(CalibrationDataReader):
        """The calibration inputs; quantize_static reads them in ranges of one (set_range), so it holds the
        activations of one frame at a time."""

        def __init__(self):
            self.progress = ProgressLine(len(inputs), "INT8 calibration")
            self.done = 0
            self.set_range(0, len(inputs))

        def __len__(self):
            return len(inputs)

        def set_range(self, start_index: int, end_index: int):
            self.pending = iter(inputs[start_index:end_index])

        def get_next(self):
            batch = next(self.pending, None)
            if batch is None:
                return None
            self.done += 1
            self.progress.update(self.done)
            return {"images": batch}

    reader = OneAtATime()
    with tempfile.TemporaryDirectory(prefix="irst-int8-") as folder, contextlib.redirect_stdout(io.StringIO()):
        prepared, quantised = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        quant_pre_process(onnx, prepared, skip_symbolic_shape=True)
        quantize_static(prepared, quantised, reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=QUANTISED_OPS,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Entropy,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                       "OpTypesToExcludeOutputQuantization": QUANTISED_OPS, "QuantizeBias": False,
                                       "AddQDQPairToWeight": True,
                                       # collect frame by frame: the loop is named for min-max, serves every method
                                       "CalibStridedMinMax": 1})
        model = onnx_package.load(str(quantised))
    reader.progress.finish(reader.done)
    onnx_package.helper.set_model_props(model, {p.key: p.value for p in original.metadata_props})
    used = {node.domain for node in model.graph.node} | {""}
    kept = [opset for opset in model.opset_import if opset.domain in used]  # the optimiser lists unused domains
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx_package.checker.check_model(model, full_check=True)
    return model


def write_int8_onnx(onnx: Path, out: Path, frames: Sequence[np.ndarray], input_size: tuple[int, int],
                    top: int = 100) -> float:
    """Write the INT8 copy of the fp32 contract ONNX ``onnx`` to ``out`` (quantize_to_int8); return the largest
    difference between the ``top`` best scores of the two in ONNX Runtime on the first calibration frame (a check
    that the copy works). UserError when TensorRT's parser would not take the copy."""
    import onnx as onnx_package

    from engines.onnx_graph import tensorrt_problems
    from engines.onnxruntime_backend import OnnxRuntimeDetector

    model = quantize_to_int8(onnx, frames, input_size)
    problems = tensorrt_problems(model)
    if problems:
        raise UserError(f"the INT8 copy of {onnx} cannot be built by TensorRT: " + "; ".join(problems))
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx_package.save(model, str(out))
    reference, quantised = OnnxRuntimeDetector(onnx), OnnxRuntimeDetector(out)
    batch, _ = reference.prepare(reference.history.stacks(frames[:1]), padded_batch=1)
    scores, int8_scores = (np.sort(engine._run(batch)[1], axis=1)[:, -top:] for engine in (reference, quantised))
    return float(np.abs(scores - int8_scores).max())
