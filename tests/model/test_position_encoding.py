import math

import torch

from detr.model.position_encoding import LearnedPositionEncoding, SinePositionEncoding


def test_sine_matches_formula_at_a_point():
    enc = SinePositionEncoding(8)
    features = torch.zeros(1, 1, 3, 4)
    pos = enc(features, None)
    assert pos.shape == (1, 8, 3, 4)
    y, x = 1, 2  # row 2 of 3, column 3 of 4 (1-based cumulative sums)
    y_norm, x_norm = 2 / 3 * 2 * math.pi, 3 / 4 * 2 * math.pi
    expected = []
    for value in (y_norm, x_norm):
        for i in range(4):
            freq = 10000 ** (2 * (i // 2) / 4)
            expected.append(math.sin(value / freq) if i % 2 == 0 else math.cos(value / freq))
    torch.testing.assert_close(pos[0, :, y, x], torch.tensor(expected), atol=1e-5, rtol=0)


def test_sine_padding_does_not_shift_real_pixels():
    enc = SinePositionEncoding(16)
    alone = enc(torch.zeros(1, 1, 4, 5), None)
    mask = torch.ones(1, 7, 9, dtype=torch.bool)
    mask[:, :4, :5] = False
    padded = enc(torch.zeros(1, 1, 7, 9), mask)
    torch.testing.assert_close(padded[..., :4, :5], alone, atol=1e-6, rtol=0)


def test_learned_encoding_halves():
    enc = LearnedPositionEncoding(8)
    pos = enc(torch.zeros(2, 1, 3, 5), None)
    assert pos.shape == (2, 8, 3, 5)
    torch.testing.assert_close(pos[0, :4, 1, 2], enc.col_embed.weight[2])
    torch.testing.assert_close(pos[0, 4:, 1, 2], enc.row_embed.weight[1])
