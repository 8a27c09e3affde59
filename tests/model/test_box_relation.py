"""The decoder's box relation (Relation-DETR): the pair geometry against a loop over the pairs,
the bias as the attention applies it, and the model with a zero bias equal to the model without."""

import math

import pytest
import torch

from detr.model import build_model
from detr.model.attention import MultiHeadAttention
from detr.model.box_relation import BoxRelation, pair_geometry
from tests.conftest import tiny_model_config


def test_pair_geometry_is_each_boxs_view_of_every_other_box():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.7, 0.3, 0.1, 0.1], [0.5, 0.5, 0.2, 0.4]]])
    geometry = pair_geometry(boxes, eps=0.0)
    for i, (xi, yi, wi, hi) in enumerate(boxes[0].tolist()):
        for j, (xj, yj, wj, hj) in enumerate(boxes[0].tolist()):
            expected = [math.log(abs(xi - xj) / wi + 1), math.log(abs(yi - yj) / hi + 1),
                        math.log(wi / wj), math.log(hi / hj)]
            torch.testing.assert_close(geometry[0, i, j], torch.tensor(expected), atol=1e-6, rtol=1e-6)
    assert torch.all(geometry[0, 0, 2] == 0)  # the same box: no distance, ratio 1


def test_the_bias_is_added_to_the_scores_before_the_softmax():
    attn = MultiHeadAttention(16, 4).eval()
    q, kv = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True
    bias = torch.randn(2, 4, 3, 5)
    out, weights = attn(q, kv, kv, pad, need_weights=True, attn_bias=bias)
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    heads = [torch.nn.functional.linear(x, w, b).view(2, -1, 4, 4).transpose(1, 2)
             for x, w, b in ((q, w_q, b_q), (kv, w_k, b_k), (kv, w_v, b_v))]
    scores = heads[0] @ heads[1].transpose(-2, -1) / 2 + bias
    expected_weights = scores.masked_fill(pad[:, None, None], float("-inf")).softmax(-1)
    expected = attn.out_proj((expected_weights @ heads[2]).transpose(1, 2).reshape(2, 3, 16))
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_the_relation_is_one_non_negative_bias_per_head_and_pair():
    relation = BoxRelation(heads=4, features=8)
    boxes = torch.rand(2, 5, 4) * 0.5 + 0.1
    bias = relation(boxes)
    assert bias.shape == (2, 4, 5, 5) and torch.all(bias >= 0)
    bias.sum().backward()
    assert relation.project.weight.grad.abs().sum() > 0  # it learns, though the boxes are not differentiated


def _pair(**overrides):
    """The same weights with and without the relation, whose bias is zeroed."""
    config = dict(queries="selected", decoder_attention="deformable", fine_level=True, denoising_groups=2,
                  num_queries=4)
    config.update(overrides)
    with_relation = build_model(tiny_model_config(box_relation=True, **config))
    without = build_model(tiny_model_config(**config))
    state = with_relation.state_dict()
    assert {name for name in state if name not in without.state_dict()} == {
        "decoder.relation.project.weight", "decoder.relation.project.bias"}
    without.load_state_dict({k: v for k, v in state.items() if not k.startswith("decoder.relation.")})
    return with_relation, without


def test_a_zero_relation_is_the_decoder_without_one_and_a_learned_one_changes_it():
    with_relation, without = _pair()
    images = torch.randn(2, 3, 64, 80)
    targets = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.6, 0.5, 0.3, 0.2]])},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
    torch.nn.init.zeros_(with_relation.decoder.relation.project.weight)
    torch.nn.init.zeros_(with_relation.decoder.relation.project.bias)
    for model in (with_relation, without):
        model.train()
    torch.manual_seed(0)
    a = with_relation(images, targets=targets)
    torch.manual_seed(0)
    b = without(images, targets=targets)
    torch.testing.assert_close(a.boxes, b.boxes)
    torch.testing.assert_close(a.denoising.logits, b.denoising.logits)
    with torch.no_grad():
        with_relation.decoder.relation.project.bias.fill_(3.0)
        with_relation.decoder.relation.project.weight.normal_()
    torch.manual_seed(0)
    assert not torch.allclose(with_relation(images, targets=targets).logits, a.logits)


def test_learned_queries_have_no_boxes_to_relate():
    with pytest.raises(ValueError, match="model.box_relation reads the queries' anchor boxes"):
        build_model(tiny_model_config(box_relation=True))
