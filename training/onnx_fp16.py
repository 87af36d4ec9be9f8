"""Store an ONNX model's float32 weights as float16, with a Cast to float32 in front of each.

onnxruntime folds the casts when it loads the model, so inference stays float32 while the file
is half the size. Used for the shipped denoise network and the U2-Net-p cut-out weights:

    python training/onnx_fp16.py IN.onnx OUT.onnx      # needs the `onnx` package
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper


def store_weights_as_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype != np.float32 or array.size < 16:
            kept.append(init)
            continue
        half_name = init.name + "_fp16"
        kept.append(numpy_helper.from_array(array.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    source, target = sys.argv[1:3]
    onnx.save(store_weights_as_float16(onnx.load(source)), target)
