import pytest
import torch

from detr.config import LossConfig
from detr.loss import SetCriterion
from detr.model import build_model
from tests.conftest import tiny_model_config

TARGETS = [
    {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4]])},
    {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])},
]


def test_a_tiny_deformable_decoder_model_trains_every_level():
    model = build_model(tiny_model_config(queries="selected", denoising_groups=2,
                                          decoder_attention="deformable", fine_level=True)).train()
    images = torch.randn(2, 3, 64, 96)
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 64:] = True
    out = model(images, mask, targets=TARGETS)
    assert out.logits.shape == (2, 6, 4) and out.boxes.shape == (2, 6, 4)
    losses = SetCriterion(3, LossConfig())(out, TARGETS)
    sum(losses.values()).backward()
    for name in ("transformer.decoder_layers.0.cross_attn.sampling_offsets.weight",
                 "transformer.decoder_layers.1.cross_attn.value_proj.weight",
                 "fine_level.project.0.weight", "backbone.body.layer2.0.conv1.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("overrides, message", [
    (dict(deformable_points=0), "at least 1"),
    (dict(decoder_attention="sparse"), "'full' or 'deformable'"),
    (dict(decoder_attention="deformable"), "decoder_attention='deformable' .* model.queries to 'anchors' or 'selected'"),
])
def test_bad_combinations_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model(tiny_model_config(**overrides))


def test_a_deformable_decoder_draws_its_sampled_points_as_attention_maps():
    model = build_model(tiny_model_config(queries="anchors", decoder_attention="deformable")).eval()
    out = model(torch.randn(1, 3, 64, 96), need_weights=True)
    cross = out.attention.decoder_cross
    assert len(cross) == 2 and cross[0].shape == (1, 4, 6, 4 * 6)  # [B, heads, queries, tokens]
    # Each query's weights sum to one over its points; the part of a point past the outer cells' centres
    # reads zeros (grid_sample's zero padding), so a box at the edge sums to less.
    totals = cross[0].sum(-1)
    assert (totals <= 1 + 1e-5).all() and (totals > 0.25).all() and totals.max() > 0.99
