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
VARIANTS = {
    "paper queries": dict(),
    "anchors, selection, denoising": dict(anchor_queries=True, query_selection=True, denoising_groups=2),
    "deformable decoder": dict(anchor_queries=True, query_selection=True, denoising_groups=2,
                               decoder_attention="deformable"),
}


def _deformable(**overrides):
    return tiny_model_config(encoder_attention="deformable", feature_levels=3, **overrides)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_tiny_deformable_model_trains(variant):
    model = build_model(_deformable(**VARIANTS[variant])).train()
    images = torch.randn(2, 3, 64, 96)
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 64:] = True
    out = model(images, mask, targets=TARGETS)
    assert out["pred_logits"].shape == (2, 6, 4) and out["pred_boxes"].shape == (2, 6, 4)
    losses = SetCriterion(3, LossConfig())(out, TARGETS)
    sum(losses.values()).backward()
    assert len(model.transformer.encoder_layers) == 0 and len(model.deformable_encoder.layers) == 2
    names = ["deformable_encoder.layers.0.self_attn.sampling_offsets.weight",
             "deformable_encoder.layers.1.self_attn.value_proj.weight",
             "multi_scale.extra.0.0.weight", "backbone.body.layer2.0.conv1.weight"]
    if VARIANTS[variant].get("decoder_attention") == "deformable":
        names.append("transformer.decoder_layers.0.cross_attn.sampling_offsets.weight")
    else:
        # Positions reach the loss through the full decoder's keys; deformable attention's offsets and
        # weights start at zero, so at the first step no gradient flows back to the queries' positions.
        names.append("multi_scale.level_embed")
    for name in names:
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_padded_image_decodes_as_it_does_alone(variant):
    """Given the same level maps on the image part (GroupNorm and the extra level's conv see
    the padding, as in Deformable DETR), padding changes nothing downstream."""
    model = build_model(_deformable(**VARIANTS[variant])).eval()
    alone = torch.randn(1, 3, 64, 64)
    captured = {}
    handle = model.multi_scale.register_forward_hook(lambda m, i, out: captured.setdefault("alone", out))
    expected = model(alone)
    handle.remove()
    src_alone, _, _, levels_alone = captured["alone"]

    def plant_alone(module, inputs, out):
        src, pos, padding, levels = out
        src = src.clone()
        for (h, w), (ha, wa), start, start_a in zip(levels.shapes, levels_alone.shapes,
                                                    levels.start_index.tolist(), levels_alone.start_index.tolist()):
            grid = torch.randn(h, w, src.shape[-1]) * 100  # the padding's values must not matter either
            grid[:ha, :wa] = src_alone[0, start_a:start_a + ha * wa].view(ha, wa, -1)
            src[0, start:start + h * w] = grid.flatten(0, 1)
        return src, pos, padding, levels

    images = torch.randn(2, 3, 64, 128)
    images[0, :, :, :64] = alone[0]
    mask = torch.zeros(2, 64, 128, dtype=torch.bool)
    mask[0, :, 64:] = True
    model.multi_scale.register_forward_hook(plant_alone)
    padded = model(images, mask)
    torch.testing.assert_close(padded["pred_logits"][:1], expected["pred_logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded["pred_boxes"][:1], expected["pred_boxes"], atol=1e-5, rtol=1e-5)


def test_multi_level_full_attention_runs_over_all_levels():
    model = build_model(tiny_model_config(feature_levels=2)).eval()
    out = model(torch.randn(1, 3, 64, 64))
    assert out["pred_boxes"].shape == (1, 6, 4)
    assert not hasattr(model, "deformable_encoder") and len(model.transformer.encoder_layers) == 2


@pytest.mark.parametrize("overrides, message", [
    (dict(encoder_attention="sparse"), "'full' or 'deformable'"),
    (dict(feature_levels=0), "at least 1"),
    (dict(encoder_attention="deformable", pre_norm=True), "post-norm"),
    (dict(decoder_attention="sparse"), "'full' or 'deformable'"),
    (dict(decoder_attention="deformable"), "need model.anchor_queries"),
])
def test_bad_combinations_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model(tiny_model_config(**overrides))


def test_attention_maps_are_refused_for_several_levels():
    model = build_model(_deformable()).eval()
    with pytest.raises(ValueError, match="single-level"):
        model(torch.randn(1, 3, 64, 64), need_weights=True)


def test_a_deformable_decoder_draws_its_sampled_points_as_attention_maps():
    model = build_model(tiny_model_config(anchor_queries=True, decoder_attention="deformable")).eval()
    out = model(torch.randn(1, 3, 64, 96), need_weights=True)
    cross = out["attention"].decoder_cross
    assert len(cross) == 2 and cross[0].shape == (1, 4, 6, 4 * 6)  # [B, heads, queries, tokens]
    # Each query's weights sum to one over its points; the part of a point past the outer cells' centres
    # reads zeros (grid_sample's zero padding), so a box at the edge sums to less.
    totals = cross[0].sum(-1)
    assert (totals <= 1 + 1e-5).all() and (totals > 0.25).all() and totals.max() > 0.99
