"""The exported graph against the PyTorch model it came from (onnxruntime on the CPU)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from detr.config import BackboneConfig
from detr.export import export_onnx
from detr.export.runtime import session_options
from detr.model import build_model
from tests.weights.helpers import tiny_weights

SIZES = ((1, 64, 96), (2, 96, 64), (3, 80, 112))  # batch, height, width: none is the traced example's
# Stopping at layer2 (stride 8) keeps a quarter of the tiny model's weights; the backbone's depth
# is not what the export can get wrong (test_onnx_r50 exports the paper's stride-32 model).
SMALL_BACKBONE = BackboneConfig(name="resnet18", last_layer="layer2")


def _weights(**overrides):
    return tiny_weights(backbone=SMALL_BACKBONE, **overrides)


def _model(weights):
    model = build_model(weights.config.model).eval()
    model.load_state_dict(weights.state)
    return model


def _session(path):
    # OnnxPredictor's options (denormals as zero among them), so that parity holds as users run it.
    return ort.InferenceSession(str(path), session_options(ort), providers=["CPUExecutionProvider"])


def _padded_batch(batch, height, width):
    images = torch.randn(batch, 3, height, width)
    mask = torch.zeros(batch, height, width, dtype=torch.bool)
    if batch > 1:  # the later entries are smaller images padded to the batch's size
        mask[1:, height * 2 // 3:, :] = True
        mask[-1, :, width // 2:] = True
        images[mask[:, None].expand_as(images)] = 0.0
    return images, mask


def _assert_outputs_match(session, model, images, mask, feed_mask=True):
    feeds = {"images": images.numpy()} | ({"mask": mask.numpy()} if feed_mask else {})
    logits, boxes = session.run(None, feeds)
    with torch.no_grad():
        expected = model(images, mask if feed_mask else None)
    assert logits.shape == tuple(expected.logits.shape)
    np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(boxes, expected.boxes.numpy(), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """The default export (with the mask input), its onnxruntime session and the PyTorch model."""
    weights = _weights()
    path = export_onnx(weights, tmp_path_factory.mktemp("onnx") / "paper.onnx")
    return _session(path), _model(weights)


@pytest.mark.parametrize("size", SIZES)
def test_logits_and_boxes_match_pytorch_on_padded_batches(paper, size):
    _assert_outputs_match(*paper, *_padded_batch(*size))


def test_an_all_false_mask_is_the_same_as_no_mask(paper):
    session, model = paper
    images = torch.randn(2, 3, 64, 80)
    logits, boxes = session.run(None, {"images": images.numpy(), "mask": np.zeros((2, 64, 80), bool)})
    with torch.no_grad():
        expected = model(images, None)
    np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(boxes, expected.boxes.numpy(), atol=1e-4, rtol=0)


def test_the_no_mask_signature_takes_images_alone(tmp_path):
    weights = _weights()
    session = _session(export_onnx(weights, tmp_path / "plain.onnx", mask="none"))
    assert [i.name for i in session.get_inputs()] == ["images"]
    model = _model(weights)
    for batch, height, width in SIZES[:2]:
        _assert_outputs_match(session, model, torch.randn(batch, 3, height, width), None, feed_mask=False)


def test_a_query_groups_model_exports_its_first_group(tmp_path):
    weights = _weights(query_groups=3)
    queries = weights.config.model.num_queries
    session = _session(export_onnx(weights, tmp_path / "groups.onnx"))
    # The reference: a one-group model holding only the first group's query rows.
    single = _weights()
    state = dict(weights.state, **{"queries.embed.weight": weights.state["queries.embed.weight"][:queries]})
    reference = _model(single)
    reference.load_state_dict(state)
    images, mask = _padded_batch(2, 64, 96)
    _assert_outputs_match(session, reference, images, mask)


def test_anchor_queries_with_query_selection_export(tmp_path):
    weights = _weights(queries="selected")
    session = _session(export_onnx(weights, tmp_path / "selection.onnx"))
    model = _model(weights)
    for size in SIZES[1:]:
        _assert_outputs_match(session, model, *_padded_batch(*size))


def test_the_fast_fine_presets_two_levels_export(tmp_path):
    """The fine level (stride 8 beside the encoder's stride 16) with query selection and selected
    content: what `fast_fine` trains. The traced upsampling must follow each input's size."""
    weights = tiny_weights(backbone=BackboneConfig(name="resnet18", last_layer="layer3"), queries="selected", selected_content=True, fine_level=True)
    session = _session(export_onnx(weights, tmp_path / "fine.onnx"))
    model = _model(weights)
    for size in SIZES:
        _assert_outputs_match(session, model, *_padded_batch(*size))


def test_distinct_queries_export(tmp_path):
    """The distinct selection's NMS is a graph op (ONNX NonMaxSuppression), not a Python loop: it
    follows each input's tokens."""
    weights = _weights(queries="selected", distinct_queries=0.5)
    session = _session(export_onnx(weights, tmp_path / "distinct.onnx"))
    model = _model(weights)
    for size in SIZES:
        _assert_outputs_match(session, model, *_padded_batch(*size))


def test_deformable_decoder_export(tmp_path):
    """Deformable cross-attention samples with grid_sample (ONNX GridSample) around each query's box,
    scaled by each image's unpadded share of the maps: both follow the input."""
    weights = tiny_weights(backbone=BackboneConfig(name="resnet18", last_layer="layer3"), queries="selected", fine_level=True, decoder_attention="deformable")
    session = _session(export_onnx(weights, tmp_path / "deformable_decoder.onnx"))
    model = _model(weights)
    for size in SIZES:
        _assert_outputs_match(session, model, *_padded_batch(*size))


def _branches(path):
    """The node lists of the default export's two traces: {"then_branch": masked, "else_branch": unmasked}."""
    (switch,) = onnx.load(str(path)).graph.node[-1:]
    assert switch.op_type == "If"
    return {attribute.name: attribute.g.node for attribute in switch.attribute}


def test_every_attention_is_one_fused_onnxruntime_node(tmp_path):
    """Encoder self-attention, decoder self- and cross-attention: one com.microsoft.MultiHeadAttention
    each, so that no [B, heads, Lq, Lk] score tensor, padding Add or Softmax is left in the graph."""
    weights = _weights()
    config = weights.config.model
    for nodes in _branches(export_onnx(weights, tmp_path / "fused.onnx")).values():
        fused = [n for n in nodes if n.op_type == "MultiHeadAttention" and n.domain == "com.microsoft"]
        assert len(fused) == config.encoder_layers + 2 * config.decoder_layers
        assert not [n for n in nodes if n.op_type == "Softmax"]


def test_the_default_graph_runs_its_unmasked_copy_on_batches_without_padding(tmp_path):
    """The default export takes the mask and, when nothing is padded, runs the trace without the mask's
    products: its outputs are those of the `mask="none"` export bit for bit, and on a padded batch
    those of the `mask="always"` one; the masked trace alone differs from the unmasked in the last bits."""
    weights = tiny_weights(backbone=BackboneConfig(name="resnet18", last_layer="layer3"), queries="selected",
                           fine_level=True, decoder_attention="deformable")
    sessions = {mode: _session(export_onnx(weights, tmp_path / f"{mode}.onnx", mask=mode))
                for mode in ("switch", "always", "none")}
    assert [i.name for i in sessions["switch"].get_inputs()] == ["images", "mask"]
    branches = _branches(tmp_path / "switch.onnx")
    assert "mask" not in {name for node in branches["else_branch"] for name in node.input}
    assert not [n for n in onnx.load(str(tmp_path / "always.onnx")).graph.node if n.op_type == "If"]
    images, mask = _padded_batch(2, 96, 64)
    unpadded = {"images": images.numpy(), "mask": np.zeros_like(mask.numpy())}
    switched = sessions["switch"].run(None, unpadded)
    for got, expected in zip(switched, sessions["none"].run(None, {"images": images.numpy()})):
        np.testing.assert_array_equal(got, expected)
    # Bit equality tells the branches apart: the masked trace's products change the last bits.
    assert not all(np.array_equal(a, b) for a, b in zip(switched, sessions["always"].run(None, unpadded)))
    padded = {"images": images.numpy(), "mask": mask.numpy()}
    for got, expected in zip(sessions["switch"].run(None, padded), sessions["always"].run(None, padded)):
        np.testing.assert_array_equal(got, expected)
    _assert_outputs_match(sessions["switch"], _model(weights), images, mask)
    with pytest.raises(ValueError, match="mask must be one of switch, always, none"):
        export_onnx(weights, tmp_path / "bad.onnx", mask="sometimes")


def test_bad_destination_and_old_opset_are_refused(tmp_path):
    weights = _weights()
    with pytest.raises(ValueError, match="name the output like model.onnx"):
        export_onnx(weights, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="opset 13 is older than 17"):
        export_onnx(weights, tmp_path / "model.onnx", opset=13)
