"""Deformable cross-attention in the decoder reads the memory inside each query's box,
on the image part of each padded level map."""

import torch

from detr.model.deformable_attention import MultiScaleDeformableAttention, attention_over_tokens, sample_levels
from detr.model.multi_scale import levels_of
from detr.model.transformer import DecoderLayer


def _layer_output(memory: torch.Tensor, box: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    layer = DecoderLayer(16, 4, 32, 0.0, False, deformable_levels=1, points=2).eval()
    query = torch.zeros(1, 1, 16)
    pos = torch.zeros_like(memory)
    with torch.no_grad():
        out, _, cross = layer(query, memory, pos, torch.zeros_like(query), mask.flatten(1),
                              boxes=box, levels=levels_of([mask]))
    return out


def test_cross_attention_samples_inside_the_box_on_the_image_part_of_a_padded_map():
    # An 8 x 8 map whose left half is the image (the right half pads the batch): a box around the
    # image's centre lies on map column 2 (not 4, and not 6), rows 3-4.
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :, 4:] = True
    box = torch.tensor([[[0.5, 0.5, 0.25, 0.25]]])  # cxcywh of the image
    torch.manual_seed(1)
    memory = torch.randn(1, 64, 16)
    base = _layer_output(memory, box, mask)

    def changed_at(row: int, column: int) -> bool:
        edited = memory.clone().view(1, 8, 8, 16)
        edited[0, row, column] += 10.0
        return not torch.allclose(_layer_output(edited.view(1, 64, 16), box, mask), base)

    assert changed_at(3, 2) or changed_at(4, 2)  # inside the box, where the image puts it
    assert not changed_at(4, 6) and not changed_at(3, 6)  # where the box would be without the valid ratio
    assert not changed_at(0, 0) and not changed_at(7, 3)  # far from the box on the image


def test_the_drawn_attention_map_is_what_the_sampling_computes():
    """attention_over_tokens (bilinear weights written out) against grid_sample: the map times
    the values is the sampled sum, points outside the maps included."""
    torch.manual_seed(0)
    attention = MultiScaleDeformableAttention(16, 4, 2, 3)
    with torch.no_grad():
        attention.sampling_offsets.weight.normal_(0, 2.0)  # points far and wide, some off the map
        attention.attention_weights.weight.normal_(0, 1.0)
    shapes = [(6, 8), (3, 4)]
    query = torch.randn(2, 5, 16)
    reference = torch.rand(2, 5, 2, 4)
    values = torch.randn(2, 6 * 8 + 3 * 4, 4, 4)  # [B, tokens, heads, head dim]
    locations, weights = attention.sampling(query, reference, shapes)
    assert (locations < 0).any() and (locations > 1).any()
    drawn = attention_over_tokens(shapes, locations, weights)  # [B, heads, queries, tokens]
    expected = sample_levels(values, shapes, locations, weights)
    torch.testing.assert_close(torch.einsum("bhqt,bthd->bqhd", drawn, values).flatten(2), expected)
