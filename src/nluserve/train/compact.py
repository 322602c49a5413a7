"""Smaller graph files: large weights stored as float16, embedding tables as int8 rows.

A model directory has a 25 MB budget, and an ensemble of networks does not fit it in float32.
The stored weights are widened back to float32 by Cast (and Mul) nodes whose inputs are all
initializers, which ONNX Runtime's constant folding evaluates once when the session is created:
the computation stays float32, only the file shrinks. onnxconverter-common's float16 conversion
is not used because it converts the computation too (slower on CPUs, and LSTM in float16 is not
implemented there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_ELEMENTS = 65536  # smaller tensors stay float32: they cost little and save nothing
MIN_ROW_WIDTH = 16  # int8 rows need a float32 scale each; narrower tables go to float16


def compact(path: Path, min_elements: int = MIN_ELEMENTS) -> dict[str, int]:
    """Rewrite ``path`` in place; returns the number of tensors converted to each storage type."""
    model = onnx.load(str(path))
    graph = model.graph
    gathered = _gather_tables(graph)
    widen: list[onnx.NodeProto] = []
    kept, counts = [], {"int8": 0, "float16": 0}
    for init in graph.initializer:
        size = int(np.prod(init.dims)) if init.dims else 1
        if init.data_type != TensorProto.FLOAT or size < min_elements:
            kept.append(init)
            continue
        weights = numpy_helper.to_array(init)
        name = init.name
        if name in gathered and weights.ndim == 2 and weights.shape[1] >= MIN_ROW_WIDTH:
            # Per-row symmetric int8: one embedding row's values share a scale, so each row keeps
            # its relative precision (about 0.4 % of its largest value).
            scale = np.abs(weights).max(axis=1, keepdims=True) / 127.0
            scale[scale == 0] = 1.0
            quantized = np.round(weights / scale).astype(np.int8)
            kept += [
                numpy_helper.from_array(quantized, f"{name}__int8"),
                numpy_helper.from_array(scale.astype(np.float32), f"{name}__scale"),
            ]
            widen += [
                helper.make_node(
                    "Cast", [f"{name}__int8"], [f"{name}__wide"], to=TensorProto.FLOAT
                ),
                helper.make_node("Mul", [f"{name}__wide", f"{name}__scale"], [name]),
            ]
            counts["int8"] += 1
        else:
            kept.append(numpy_helper.from_array(weights.astype(np.float16), f"{name}__f16"))
            widen.append(helper.make_node("Cast", [f"{name}__f16"], [name], to=TensorProto.FLOAT))
            counts["float16"] += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(widen + nodes)  # before every consumer: nodes stay topologically sorted
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return counts


def _gather_tables(graph: onnx.GraphProto) -> set[str]:
    """Initializers used only as the table of Gather nodes (embeddings)."""
    uses: dict[str, set[str]] = {}
    for node in graph.node:
        for pos, name in enumerate(node.input):
            uses.setdefault(name, set()).add(node.op_type if pos == 0 else "other")
    return {name for name, ops in uses.items() if ops == {"Gather"}}
