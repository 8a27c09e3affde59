import math

import pytest
import torch

from detr.model import build_model
from detr.model.anchor_decoder import box_sine_encoding, inverse_sigmoid
from detr.model.encoded import EncodedImage
from detr.model.queries import DecoderQueries
from detr.model.transformer import AttentionMaps
from tests.conftest import tiny_model_config


def _anchor_model(**overrides):
    return build_model(tiny_model_config(queries="anchors", **overrides)).eval()


def test_box_sine_encoding_matches_the_formula_coordinate_by_coordinate():
    box = torch.tensor([[0.25, 0.5, 0.1, 0.9]])
    dim = 8  # 4 channels per coordinate: sin f0, cos f0, sin f1, cos f1
    encoded = box_sine_encoding(box, dim)[0]
    expected = []
    for value in box[0].tolist():
        for i in range(dim // 2):
            frequency = 10000 ** (2 * (i // 2) / (dim // 2))
            angle = value * 2 * math.pi / frequency
            expected.append(math.sin(angle) if i % 2 == 0 else math.cos(angle))
    torch.testing.assert_close(encoded, torch.tensor(expected))


def test_boxes_start_as_the_anchors_and_each_layer_adds_its_correction_in_logit_space():
    model = _anchor_model(decoder_layers=3)
    images = torch.randn(1, 3, 64, 64)
    anchors = model.queries.anchor.weight  # inverse-sigmoid cxcywh
    out = model(images)
    # A fresh box head predicts no correction: every layer returns the anchors.
    for layer in out.aux + [out]:
        torch.testing.assert_close(layer.boxes[0], anchors.sigmoid())
    delta = torch.tensor([0.3, -0.2, 0.1, 0.4])
    with torch.no_grad():
        model.bbox_embed.layers[-1].bias.copy_(delta)
    out = model(images)
    layers = out.aux + [out]
    for k, layer in enumerate(layers, start=1):  # layer k's box is anchor + k corrections
        torch.testing.assert_close(layer.boxes[0], (anchors + k * delta).sigmoid(), atol=1e-5, rtol=0)


def test_inverse_sigmoid_undoes_sigmoid():
    x = torch.linspace(-5, 5, 11)
    torch.testing.assert_close(inverse_sigmoid(x.sigmoid()), x, atol=1e-4, rtol=0)


def test_anchor_model_with_groups_uses_the_first_group_in_eval():
    grouped = _anchor_model(query_groups=3)
    single = _anchor_model()
    state = grouped.state_dict()
    state["queries.content.weight"] = state["queries.content.weight"][:6]
    state["queries.anchor.weight"] = state["queries.anchor.weight"][:6]
    single.load_state_dict(state)
    images = torch.randn(2, 3, 64, 80)
    torch.testing.assert_close(grouped(images).boxes, single(images).boxes)
    grouped.train()
    assert grouped(images).logits.shape[1] == 18


@pytest.mark.parametrize("overrides, message", [
    (dict(denoising_groups=1), "model.denoising_groups needs anchor-box queries"),
    (dict(queries="anchors", selected_content=True), "model.selected_content acts on selected queries"),
    (dict(queries="boxes"), "'learned', 'anchors' or 'selected', not 'boxes'"),
])
def test_a_setting_that_cannot_work_or_would_do_nothing_is_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model(tiny_model_config(**overrides))


def _box_head_gradients(model, layer: int) -> list[float]:
    """The gradient norm that one decoder layer's box loss sends to each layer's box correction
    (the box head's output, one per layer: captured by a hook on the shared head)."""
    corrections = []
    handle = model.bbox_embed.register_forward_hook(lambda module, args, output: corrections.append(output))
    torch.manual_seed(0)
    out = model(torch.randn(1, 3, 64, 64))
    handle.remove()
    for correction in corrections:
        correction.retain_grad()
    boxes = [*[aux.boxes for aux in out.aux], out.boxes]
    boxes[layer].sum().backward()
    return [0.0 if c.grad is None else c.grad.norm().item() for c in corrections]


def test_each_layers_box_loss_teaches_its_own_correction_alone():
    """Deformable DETR's cut: a layer's anchor is the previous layer's box, detached."""
    torch.manual_seed(0)
    model = _anchor_model(decoder_layers=3)
    with torch.no_grad():  # a nonzero correction, so that the layers' boxes differ
        model.bbox_embed.layers[-1].weight.normal_(0, 0.1)
    for layer in range(3):
        grads = _box_head_gradients(model, layer)
        assert grads[layer] > 0 and all(g == 0.0 for i, g in enumerate(grads) if i != layer)


def test_selected_content_adds_the_chosen_tokens_features_to_the_queries():
    """With selected_content, the decoder's input content is the learned vectors plus the
    chosen tokens' projected features: checked by running the decoder by hand."""
    torch.manual_seed(0)
    model = build_model(tiny_model_config(queries="selected", selected_content=True)).eval()
    plain = build_model(tiny_model_config(queries="selected")).eval()
    plain.load_state_dict(model.state_dict())
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        got = model(images)
        assert not torch.allclose(got.logits, plain(images).logits)
        features, _ = model.backbone(images, None)
        src = model.input_proj(features).flatten(2).transpose(1, 2)
        pos = model.position_encoding(features, None).flatten(2).transpose(1, 2)
        memory = model.transformer.encode(src, pos, None, AttentionMaps([], [], []), False)
        mask = torch.zeros(1, *features.shape[-2:], dtype=torch.bool)
        _, anchors, selected = model.query_selection(memory, [mask], 6)
        content = model.queries.content.weight[None] + selected
        encoded = EncodedImage(memory, pos, None, [mask], tuple(features.shape[-2:]))
        hidden, boxes = model.decoder(model.transformer, model.bbox_embed, DecoderQueries(content, anchors), encoded)
    torch.testing.assert_close(got.boxes, boxes[-1], atol=1e-6, rtol=0)
    torch.testing.assert_close(got.logits, model.class_embed(hidden[-1]), atol=1e-5, rtol=0)
