"""An FP16 copy of a contract ONNX, for strongly typed TensorRT (11, or 10 with the STRONGLY_TYPED flag), which
takes every tensor's precision from the ONNX instead of a builder flag.

What runs in fp16: the network, i.e. every node that feeds a convolution or matrix product (Conv, ConvTranspose,
MatMul, Gemm), and those products themselves. What stays fp32: the graph's input and outputs (the engine contract
is unchanged), and everything after the last products, i.e. the box decoding and top-K, because box coordinates
above 512 px have 0.5 px steps in fp16 and these targets are 2-9 px wide. Casts are inserted where the two meet;
the few inputs ONNX requires in fp32 whatever the data type (Resize scales and roi, Upsample scales) stay fp32.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import UserError

MAC_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
FP32_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}  # (op, input positions) that stay float32 in an fp16 network
FP16_MAX = float(np.finfo(np.float16).max)


def convert_to_fp16(model):
    """A new onnx ModelProto: ``model`` with its network in fp16 (module docs), checked by onnx's full checker."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        raise UserError("FP16 conversion: the graph has subgraphs (If / Loop / Scan), which it does not handle")
    inferred = shape_inference.infer_shapes(model)
    types = {t.name: t.data_type for t in graph.initializer}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        types.setdefault(info.name, info.type.tensor_type.elem_type)
    nodes = list(graph.node)
    initializers = {t.name for t in graph.initializer}
    producer = {out: index for index, node in enumerate(nodes) for out in node.output}
    consumers: dict[str, list[tuple[int, int]]] = {}
    for index, node in enumerate(nodes):
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((index, position))
    network = _ancestors_of_products(nodes, producer)

    def wants_fp16(index: int, position: int) -> bool:
        return index in network and position not in FP32_INPUTS.get(nodes[index].op_type, ())

    def is_fp16(name: str) -> bool:
        """Whether float tensor ``name`` becomes fp16: the output of a network node, or a constant that only the
        network reads, as fp16 data; graph inputs stay fp32."""
        index = producer.get(name)
        if name in initializers or index is not None and nodes[index].op_type == "Constant":
            uses = consumers.get(name, [])
            return bool(uses) and all(wants_fp16(*use) for use in uses)
        return index in network

    fp16 = {name for name, t in types.items() if t == TensorProto.FLOAT and is_fp16(name)}
    for index in sorted(network):
        node = nodes[index]
        if node.op_type in ("EyeLike", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"):
            raise UserError(f"FP16 conversion: node {node.name!r} ({node.op_type}) is not handled")
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                attribute.i = TensorProto.FLOAT16
            elif node.op_type == "ConstantOfShape" and attribute.name == "value" \
                    and attribute.t.data_type == TensorProto.FLOAT:
                attribute.t.CopyFrom(_to_fp16(attribute.t, numpy_helper))
    for node in nodes:
        if node.op_type == "Constant" and node.output[0] in fp16:
            for attribute in node.attribute:
                if attribute.name == "value":
                    attribute.t.CopyFrom(_to_fp16(attribute.t, numpy_helper))
    for tensor in graph.initializer:
        if tensor.name in fp16:
            tensor.CopyFrom(_to_fp16(tensor, numpy_helper))

    casts, new_nodes = {}, []

    def cast(name: str, to_fp16: bool) -> str:
        key = (name, to_fp16)
        if key not in casts:
            casts[key] = f"{name}__{'fp16' if to_fp16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], name=f"{casts[key]}__cast",
                                              to=TensorProto.FLOAT16 if to_fp16 else TensorProto.FLOAT))
        return casts[key]

    for index, node in enumerate(nodes):
        for position, name in enumerate(node.input):
            if name and types.get(name) == TensorProto.FLOAT and (name in fp16) != wants_fp16(index, position):
                node.input[position] = cast(name, wants_fp16(index, position))
    for output in graph.output:
        if output.name in fp16:  # keep the contract's fp32 output under its own name
            inner = f"{output.name}__fp16_out"
            for node in graph.node:
                node.output[:] = [inner if o == output.name else o for o in node.output]
                node.input[:] = [inner if i == output.name else i for i in node.input]
            new_nodes.append(helper.make_node("Cast", [inner], [output.name], to=TensorProto.FLOAT))
    graph.node.extend(new_nodes)
    _sort_topologically(graph)
    del graph.value_info[:]
    checked = shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(checked, full_check=True)
    return checked


def write_fp16_onnx(onnx: Path, out: Path, top: int = 100) -> float:
    """Write the FP16 copy of the contract ONNX ``onnx`` to ``out``; return the largest difference between the
    ``top`` best scores of the two in ONNX Runtime on a seeded noise frame (a check that the copy works)."""
    import onnx as onnx_package

    from engines.onnx_graph import load_onnx
    from engines.onnxruntime_backend import OnnxRuntimeDetector

    out.parent.mkdir(parents=True, exist_ok=True)
    onnx_package.save(convert_to_fp16(load_onnx(onnx)), str(out))
    reference, converted = OnnxRuntimeDetector(onnx), OnnxRuntimeDetector(out)
    height, width = (size or 256 for size in reference.fixed_size)
    frame = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    batch, _ = reference.prepare([frame], padded_batch=1)
    scores, half_scores = (np.sort(engine._run(batch)[1], axis=1)[:, -top:] for engine in (reference, converted))
    return float(np.abs(scores - half_scores).max())


def _ancestors_of_products(nodes: list, producer: dict[str, int]) -> set[int]:
    """Indices of the nodes that feed a Conv / ConvTranspose / MatMul / Gemm (directly or not), and of those."""
    stack = [index for index, node in enumerate(nodes) if node.op_type in MAC_OPS]
    seen = set(stack)
    while stack:
        for name in nodes[stack.pop()].input:
            index = producer.get(name)
            if index is not None and index not in seen:
                seen.add(index)
                stack.append(index)
    return seen


def _to_fp16(tensor, numpy_helper):
    values = numpy_helper.to_array(tensor).astype(np.float32)
    return numpy_helper.from_array(np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16), tensor.name)


def _sort_topologically(graph) -> None:
    """Reorder the nodes so every input is produced before it is read (the inserted Casts went to the end)."""
    available = {t.name for t in graph.initializer} | {i.name for i in graph.input} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise UserError("FP16 conversion: the graph has a cycle or reads a tensor nothing produces")
        ready_ids = {id(n) for n in ready}
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
