"""Static facts about an exported ONNX graph: whether TensorRT's parser supports every operator in it, and how
much arithmetic it does per frame. Needs the ``onnx`` package (train / dev extras), not a GPU.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import UserError

SUPPORTED_OPS_FILE = Path(__file__).with_name("tensorrt_onnx_ops.txt")
DEFAULT_DOMAINS = ("", "ai.onnx")
TOPK_LIMIT = 3840  # TensorRT: "K input must be less than 3840"
MAC_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def load_onnx(path: str | Path):
    try:
        import onnx
    except ImportError as err:
        raise UserError(f"checking an ONNX graph needs the onnx package ({err}): pip install onnx (it is in the "
                        "train and dev extras)") from None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ONNX file not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as err:  # protobuf decode errors have no common base class
        raise UserError(f"{path} is not an ONNX model ({type(err).__name__}: {err})") from None


@dataclass(frozen=True)
class SupportedOps:
    """TensorRT's supported ONNX operators and opset range (engines/tensorrt_onnx_ops.txt, which names its source)."""

    ops: frozenset[str]
    min_opset: int
    max_opset: int

    @classmethod
    def read(cls, path: Path = SUPPORTED_OPS_FILE) -> SupportedOps:
        ops, opsets = set(), (0, 0)
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("opset:"):
                low, high = line.split(":", 1)[1].split("-")
                opsets = (int(low), int(high))
            elif line:
                ops.add(line)
        return cls(frozenset(ops), *opsets)


def tensorrt_problems(model, supported: SupportedOps | None = None) -> list[str]:
    """Why TensorRT's ONNX parser would reject ``model`` (an onnx ModelProto), one line each; empty when it would
    not: operators outside the supported list (with counts), custom domains, the opset, TopK with a large K."""
    supported = supported or SupportedOps.read()
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), None)
    if opset is None or not supported.min_opset <= opset <= supported.max_opset:
        problems.append(f"opset {opset} is outside TensorRT's {supported.min_opset}..{supported.max_opset}")
    nodes = list(all_nodes(model.graph))
    custom = Counter(f"{n.domain}::{n.op_type}" for n in nodes if n.domain not in DEFAULT_DOMAINS)
    unsupported = Counter(n.op_type for n in nodes if n.domain in DEFAULT_DOMAINS and n.op_type not in supported.ops)
    problems += [f"operator {op} ({count} node{'s' * (count > 1)}) is not in TensorRT's supported ONNX operators"
                 for op, count in sorted(unsupported.items())]
    problems += [f"operator {op} ({count} node{'s' * (count > 1)}) is from a custom domain (needs a TensorRT plugin)"
                 for op, count in sorted(custom.items())]
    constants = constant_values(model.graph)
    for node in nodes:
        if node.op_type == "TopK" and len(node.input) > 1:
            k = constants.get(node.input[1])
            if k is None:
                problems.append(f"TopK node {node.name!r}: K is not a constant")
            elif int(np.max(k)) >= TOPK_LIMIT:
                problems.append(f"TopK node {node.name!r}: K = {int(np.max(k))} is not below {TOPK_LIMIT}")
    return problems


def all_nodes(graph):
    """Every node of ``graph``, including those in subgraphs (If / Loop / Scan bodies)."""
    from onnx import AttributeProto

    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                yield from all_nodes(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from all_nodes(subgraph)


def constant_values(graph) -> dict[str, np.ndarray]:
    """Values of the graph's initializers and Constant nodes, by tensor name."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def count_macs(path: str | Path, height: int, width: int) -> dict[str, int]:
    """Multiply-accumulates per frame of Conv, ConvTranspose, MatMul and Gemm nodes for one [1, F, height, width]
    input (F: the input's fixed dimension 1, the frames of a multi-frame model; else 1), by operator and in
    'total'; FLOPs are twice that.

    Shapes come from onnx shape inference (with data propagation); the few it cannot resolve (e.g. behind
    data-dependent reshapes) are read from one ONNX Runtime run at batch 1 with those tensors as extra outputs.
    """
    from onnx import shape_inference

    model = load_onnx(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = (1, dims[1].dim_value or 1, height, width)
    for dim, value in zip(dims, shape):
        dim.ClearField("dim_param")
        dim.dim_value = value
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {t.name: list(t.dims) for t in inferred.graph.initializer}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    nodes = [n for n in inferred.graph.node if n.op_type in MAC_OPS]
    needed = {name for n in nodes for name in (*n.input[:2], n.output[0])}
    unknown = sorted(name for name in needed if shapes.get(name) is None or None in shapes[name])
    if unknown:
        shapes.update(_run_shapes(model, unknown, shape))
    macs = Counter()
    for node in nodes:
        macs[node.op_type] += node_macs(node, shapes)
    macs["total"] = sum(macs.values())
    return dict(macs)


def node_macs(node, shapes: dict[str, list[int]]) -> int:
    """Multiply-accumulates of one Conv / ConvTranspose / MatMul / Gemm node given every tensor's shape."""
    attributes = {a.name: a for a in node.attribute}
    if node.op_type == "Conv":
        weight, output = shapes[node.input[1]], shapes[node.output[0]]
        return int(np.prod(output)) * int(np.prod(weight[1:]))  # weight [Cout, Cin / groups, kh, kw]
    if node.op_type == "ConvTranspose":
        weight, data = shapes[node.input[1]], shapes[node.input[0]]
        return int(np.prod(data)) * int(np.prod(weight[1:]))  # each input value meets weight [Cout / groups, kh, kw]
    if node.op_type == "MatMul":
        a, output = shapes[node.input[0]], shapes[node.output[0]]
        return int(np.prod(output)) * int(a[-1])
    a = shapes[node.input[0]]  # Gemm: A [M, K] (or [K, M] with transA), output [M, N]
    trans_a = attributes["transA"].i if "transA" in attributes else 0
    return int(np.prod(shapes[node.output[0]])) * int(a[0] if trans_a else a[1])


def _run_shapes(model, names: list[str], shape: tuple[int, ...]) -> dict[str, list[int]]:
    """Actual shapes of the tensors ``names`` in one ONNX Runtime run of ``model`` on a zero input of ``shape``."""
    import onnx
    import onnxruntime

    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(names, {model.graph.input[0].name: np.zeros(shape, np.float32)})
    return {name: list(value.shape) for name, value in zip(names, values)}
