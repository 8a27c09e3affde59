import math

import pytest
import torch

from detr.model.deformable_attention import MultiScaleDeformableAttention

SHAPES = [(3, 4), (2, 2), (1, 3)]


def _bilinear(level_map: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """level_map [h, w, c] read at (x, y) in [0, 1] of the map, pixel centres at (i + 0.5) / size
    (align_corners=False), zero outside."""
    height, width, channels = level_map.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(channels, dtype=level_map.dtype)
    for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
        for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
            if 0 <= xi < width and 0 <= yi < height:
                out += wx * wy * level_map[yi, xi]
    return out


def _reference(attn, query, reference, value, shapes, padding_mask):
    """Deformable attention by loops: per image, query, head, level and point."""
    heads, levels, points = attn.heads, attn.levels, attn.points
    batch, queries, dim = query.shape
    head_dim = dim // heads
    projected = value @ attn.value_proj.weight.T + attn.value_proj.bias
    if padding_mask is not None:
        projected = projected * (~padding_mask[..., None]).to(projected.dtype)
    out = torch.zeros(batch, queries, dim, dtype=query.dtype)
    for b in range(batch):
        for q in range(queries):
            offsets = (attn.sampling_offsets.weight @ query[b, q] + attn.sampling_offsets.bias)
            offsets = offsets.view(heads, levels, points, 2)
            logits = (attn.attention_weights.weight @ query[b, q] + attn.attention_weights.bias).view(heads, -1)
            weights = (logits.exp() / logits.exp().sum(-1, keepdim=True)).view(heads, levels, points)
            for h in range(heads):
                channels = slice(h * head_dim, (h + 1) * head_dim)
                start = 0
                for level, (height, width) in enumerate(shapes):
                    level_map = projected[b, start:start + height * width, channels].reshape(height, width, -1)
                    start += height * width
                    ref = reference[b, q, level]
                    for p in range(points):
                        dx, dy = offsets[h, level, p]
                        if ref.shape[0] == 2:
                            x, y = ref[0] + dx / width, ref[1] + dy / height
                        else:
                            x = ref[0] + dx / points * ref[2] * 0.5
                            y = ref[1] + dy / points * ref[3] * 0.5
                        out[b, q, channels] += weights[h, level, p] * _bilinear(level_map, float(x), float(y))
    return out @ attn.output_proj.weight.T + attn.output_proj.bias


def _case(reference_size: int, dtype=torch.float32):
    dim, heads, points = 8, 2, 3
    attn = MultiScaleDeformableAttention(dim, heads, len(SHAPES), points).to(dtype)
    with torch.no_grad():  # the official init zeroes these weights; make every query sample its own points
        attn.sampling_offsets.weight.normal_(0, 0.5)
        attn.attention_weights.weight.normal_(0, 0.5)
        attn.value_proj.bias.normal_(0, 0.5)
    lv = sum(h * w for h, w in SHAPES)
    query = torch.randn(2, 5, dim, dtype=dtype)
    value = torch.randn(2, lv, dim, dtype=dtype)
    reference = torch.rand(2, 5, len(SHAPES), reference_size, dtype=dtype)
    if reference_size == 4:
        reference[..., 2:] = reference[..., 2:] * 0.8 + 0.1
    padding = torch.zeros(2, lv, dtype=torch.bool)
    padding[1, 3::4] = True  # image 1's last column on level 0
    return attn, query, reference, value, padding


@pytest.mark.parametrize("reference_size", [2, 4])
@pytest.mark.parametrize("padded", [False, True])
def test_matches_a_loop_over_heads_levels_and_points(reference_size, padded):
    attn, query, reference, value, padding = _case(reference_size)
    padding = padding if padded else None
    out = attn(query, reference, value, SHAPES, padding)
    with torch.no_grad():
        expected = _reference(attn, query, reference, value, SHAPES, padding)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_padded_values_are_never_read():
    attn, query, reference, value, padding = _case(2)
    scrambled = torch.where(padding[..., None], torch.randn_like(value) * 100, value)
    torch.testing.assert_close(attn(query, reference, scrambled, SHAPES, padding),
                               attn(query, reference, value, SHAPES, padding))


def test_gradients_match_finite_differences():
    attn, query, reference, value, padding = _case(4, torch.float64)
    attn, query, reference, value = attn, query[:1, :2], reference[:1, :2], value[:1]
    inputs = [t.clone().requires_grad_() for t in (query, reference, value)]
    assert torch.autograd.gradcheck(lambda q, r, v: attn(q, r, v, SHAPES, padding[:1]), inputs)


def test_official_init_puts_each_head_on_its_own_ray():
    attn = MultiScaleDeformableAttention(16, 8, 2, 3)
    bias = attn.sampling_offsets.bias.view(8, 2, 3, 2)
    for p in range(3):  # point p sits p + 1 cells out, on the square's border at angle 2πh/8
        torch.testing.assert_close(bias[0, 1, p], torch.tensor([p + 1.0, 0.0]))
        torch.testing.assert_close(bias[1, 0, p], torch.tensor([p + 1.0, p + 1.0]))
        torch.testing.assert_close(bias[2, 0, p], torch.tensor([0.0, p + 1.0]), atol=1e-6, rtol=0)
        torch.testing.assert_close(bias[4, 1, p], torch.tensor([-(p + 1.0), 0.0]), atol=1e-6, rtol=0)
    assert not attn.sampling_offsets.weight.any()
    assert not attn.attention_weights.weight.any() and not attn.attention_weights.bias.any()


def test_mismatched_levels_are_a_clear_error():
    attn, query, reference, value, _ = _case(2)
    with pytest.raises(ValueError, match="do not match"):
        attn(query, reference, value, SHAPES[:2])
