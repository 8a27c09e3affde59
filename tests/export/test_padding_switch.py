"""switch_on_padding on hand-made graphs whose two traces compute different things, so that the
output says which branch ran; names shared by the two graphs must not meet."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from detr.export.padding_switch import switch_on_padding

IMAGES = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n"])
MASK = helper.make_tensor_value_info("mask", TensorProto.BOOL, ["n"])
OUT = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n"])


def _weight(value):
    return numpy_helper.from_array(np.array([value], np.float32), "w")  # one name in both graphs


def _model(graph):
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _masked():
    """out = images * 2 + mask, the product read inside a nested If (a name from the enclosing graph)."""
    nested = helper.make_graph([helper.make_node("Identity", ["t"], ["nested_t"])], "nested", [],
                               [helper.make_tensor_value_info("nested_t", TensorProto.FLOAT, ["n"])])
    nodes = [helper.make_node("Mul", ["images", "w"], ["t"], name="scale"),
             helper.make_node("Constant", [], ["yes"], value=numpy_helper.from_array(np.array(True))),
             helper.make_node("If", ["yes"], ["u"], then_branch=nested, else_branch=nested),
             helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["u", "m"], ["out"])]
    return _model(helper.make_graph(nodes, "masked", [IMAGES, MASK], [OUT], initializer=[_weight(2.0)]))


def _unmasked():
    """out = images * 3, with the masked graph's names for its weight and its product."""
    nodes = [helper.make_node("Mul", ["images", "w"], ["t"], name="scale"),
             helper.make_node("Identity", ["t"], ["out"])]
    return _model(helper.make_graph(nodes, "unmasked", [IMAGES], [OUT], initializer=[_weight(3.0)]))


def test_the_mask_picks_the_branch():
    model = switch_on_padding(_masked(), _unmasked())
    onnx.checker.check_model(model, full_check=True)
    assert [value.name for value in model.graph.input] == ["images", "mask"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    images = np.array([1.0, 2.0, 4.0], np.float32)
    unpadded = session.run(None, {"images": images, "mask": np.zeros(3, bool)})[0]
    np.testing.assert_array_equal(unpadded, images * 3)
    mask = np.array([False, False, True])
    np.testing.assert_array_equal(session.run(None, {"images": images, "mask": mask})[0], images * 2 + mask)


def _names(graph):
    """Every value and initializer name made inside `graph` and the graphs nested in it."""
    names = {value.name for value in (*graph.output, *graph.initializer)}
    for node in graph.node:
        names.update(node.output)
        for attribute in node.attribute:
            if attribute.HasField("g"):
                names |= _names(attribute.g)
    return names


def test_no_name_is_made_twice():
    """The IR wants names unique across a graph and its subgraphs (onnxruntime 1.32 forgives it):
    each branch's names are its own, and none shadows the outer graph's."""
    model = switch_on_padding(_masked(), _unmasked())
    switch = model.graph.node[-1]
    branches = {attribute.name: _names(attribute.g) for attribute in switch.attribute}
    padded, unpadded = branches["then_branch"], branches["else_branch"]
    outer = {name for node in model.graph.node for name in node.output}
    assert not padded & unpadded and not (padded | unpadded) & outer
    assert "padded/nested_t" in padded  # the nested graph's names too


def test_graphs_that_do_not_pair_are_refused():
    with pytest.raises(ValueError, match="no 'mask' input"):
        switch_on_padding(_unmasked(), _unmasked())
    with pytest.raises(ValueError, match="but the mask"):
        switch_on_padding(_masked(), _masked())
    renamed = _unmasked()
    renamed.graph.output[0].name = "other"
    with pytest.raises(ValueError, match="same outputs"):
        switch_on_padding(_masked(), renamed)
