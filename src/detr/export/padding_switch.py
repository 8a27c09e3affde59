"""One ONNX graph from two traces of a model: the one without a mask for batches without
padding, the masked one for the others.

The mask costs a product before every convolution and masked normalisations, which a batch
without padding (one image, or images of one size) does not need. ONNX has no optional
inputs, so the file always takes the mask and an If node picks the trace: one 192x256 image
of the default, 2 threads, ran in 9.9 ms against the masked trace's 10.7 (the unmasked
trace alone: 9.4), and padded batches of 8 as fast as the masked trace alone.

Each branch holds its own copy of the weights. With one copy in the outer graph, onnxruntime
(1.32) left the branches' convolutions unoptimised and both branches ran slower than the
masked trace alone.
"""

from __future__ import annotations

from detr.export.optional import optional_module

MASK_INPUT = "mask"


def switch_on_padding(masked, unmasked):
    """A ModelProto with `masked`'s inputs and outputs that runs `unmasked` (the same model
    traced without the mask input) when the mask has no True entry, and `masked` otherwise."""
    onnx = optional_module("onnx")
    helper = onnx.helper
    inputs = [value.name for value in masked.graph.input]
    if MASK_INPUT not in inputs:
        raise ValueError(f"the masked graph has no {MASK_INPUT!r} input: {inputs}")
    unmasked_inputs = [value.name for value in unmasked.graph.input]
    if MASK_INPUT in unmasked_inputs or not set(unmasked_inputs) <= set(inputs):
        raise ValueError(f"the unmasked graph must take the masked one's inputs {inputs} but the mask; "
                         f"it takes {unmasked_inputs}")
    outputs = [value.name for value in masked.graph.output]
    if [value.name for value in unmasked.graph.output] != outputs:
        raise ValueError("the two graphs must give the same outputs")
    nodes = [
        helper.make_node("Cast", [MASK_INPUT], ["padding/mask_as_int"], to=onnx.TensorProto.INT32),
        helper.make_node("ReduceMax", ["padding/mask_as_int"], ["padding/any_as_int"], keepdims=0),
        helper.make_node("Cast", ["padding/any_as_int"], ["padding/any"], to=onnx.TensorProto.BOOL),
        helper.make_node("If", ["padding/any"], outputs, name="padding/switch",
                         then_branch=_branch(onnx, masked.graph, "padded/", set(inputs)),
                         else_branch=_branch(onnx, unmasked.graph, "unpadded/", set(inputs))),
    ]
    graph = helper.make_graph(nodes, masked.graph.name, list(masked.graph.input), list(masked.graph.output))
    return helper.make_model(graph, opset_imports=list(masked.opset_import), ir_version=masked.ir_version,
                             producer_name=masked.producer_name, producer_version=masked.producer_version)


def _branch(onnx, graph, prefix: str, outer: set[str]):
    """`graph` as an If branch: no inputs (it reads the outer graph's by name), and every other
    name prefixed, so that the two branches' names never meet."""
    branch = onnx.GraphProto()
    branch.CopyFrom(graph)
    del branch.input[:]
    _prefix_names(branch, prefix, outer)
    branch.name = prefix.rstrip("/")
    return branch


def _prefix_names(graph, prefix: str, outer: set[str]) -> None:
    """Prefix, in place, every value, node and initializer name of `graph` and of the graphs
    nested in its nodes, except the names in `outer` and the empty name (an omitted input)."""
    def renamed(name: str) -> str:
        return name if not name or name in outer else prefix + name

    for node in graph.node:
        node.name = renamed(node.name)
        node.input[:] = [renamed(name) for name in node.input]
        node.output[:] = [renamed(name) for name in node.output]
        for attribute in node.attribute:
            for nested in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                _prefix_names(nested, prefix, outer)
    for values in (graph.input, graph.output, graph.value_info, graph.initializer, graph.sparse_initializer):
        for value in values:
            if hasattr(value, "values"):  # a sparse initializer names its values tensor
                value.values.name = renamed(value.values.name)
            else:
                value.name = renamed(value.name)
