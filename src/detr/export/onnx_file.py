"""Writing a DETR as an ONNX file with its config and categories in the file's metadata."""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path

import torch

from detr.export.optional import optional_module
from detr.export.graph import InferenceGraph
from detr.export.padding_switch import switch_on_padding
from detr.model import build_model
from detr.weights import LoadedWeights, load_weights

METADATA_KEY = "detr"  # JSON: the experiment config, the categories, and the graph's signature
OPSET = 17
_EXAMPLE_BATCH = 2  # not 1, so that the tracer cannot fold the batch axis away


# What the graph does with the padding mask: take it and run a copy of itself without the
# mask's products when the batch has none (export/padding_switch.py); always apply it; or
# take no mask at all (single images or equal-sized batches).
MASK_MODES = ("switch", "always", "none")


def export_onnx(source: str | Path | LoadedWeights, path: str | Path, postprocess: bool = False,
                mask: str = "switch", opset: int = OPSET) -> Path:
    """Write `source` (anything `load_weights` reads) to `path` as an ONNX graph with dynamic
    batch, height and width; see InferenceGraph for its inputs and outputs and MASK_MODES for `mask`
    (with "switch" the file holds the weights twice)."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"export writes an .onnx file, not {path}; name the output like model.onnx")
    if opset < OPSET:
        raise ValueError(f"opset {opset} is older than {OPSET}, the oldest this export supports")
    if mask not in MASK_MODES:
        raise ValueError(f"mask must be one of {', '.join(MASK_MODES)}, not {mask!r}")
    onnx = optional_module("onnx")
    weights = source if isinstance(source, LoadedWeights) else load_weights(source)
    model = build_model(weights.config.model)
    model.load_state_dict(weights.state)
    if mask == "switch":
        proto = switch_on_padding(_traced(onnx, InferenceGraph(model, True, postprocess), opset),
                                  _traced(onnx, InferenceGraph(model, False, postprocess), opset))
    else:
        proto = _traced(onnx, InferenceGraph(model, mask == "always", postprocess), opset)
    entry = proto.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps({"config": weights.config.to_dict(), "categories": weights.categories.to_dict(),
                              "inputs": [value.name for value in proto.graph.input],
                              "outputs": [value.name for value in proto.graph.output], "mask": mask})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    onnx.save(proto, str(partial))
    os.replace(partial, path)
    return path


def _traced(onnx, graph: InferenceGraph, opset: int):
    """`graph` traced to an in-memory ModelProto."""
    model = graph.model
    # The smallest example (tracing cost grows with it) whose feature map has more tokens
    # than queries, which query selection needs; the graph then takes any size.
    side = model.backbone.stride * (math.isqrt(model.config.num_queries) + 2)
    height, width = side, side + 2 * model.backbone.stride
    images = torch.randn(_EXAMPLE_BATCH, 3, height, width)
    mask = torch.zeros(_EXAMPLE_BATCH, height, width, dtype=torch.bool)
    mask[1, :, width * 3 // 4:] = True  # a padded entry, so no branch on "no padding" is traced
    sizes = torch.tensor([[height, width]] * _EXAMPLE_BATCH)
    args = (images,) + (mask,) * graph.with_mask + (sizes,) * graph.postprocess
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "mask": {0: "batch", 1: "height", 2: "width"},
            "image_sizes": {0: "batch"}}
    axes.update({name: {0: "batch"} for name in graph.output_names})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks in the model (e.g. enough tokens for query selection) are Python
        # branches the tracer fixes at the example's values: they hold for any larger input.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # The TorchScript tracer (dynamo=False), not torch 2.14's default dynamo exporter:
        # it needs only torch (no onnxscript), works offline here, and takes dynamic_axes.
        # The attention exports as onnxruntime's fused operator (model/attention.py).
        torch.onnx.export(graph, args, buffer, dynamo=False, opset_version=opset,
                          custom_opsets={"com.microsoft": 1},
                          input_names=graph.input_names, output_names=graph.output_names,
                          dynamic_axes={n: axes[n] for n in graph.input_names + graph.output_names})
    return onnx.load_from_string(buffer.getvalue())
