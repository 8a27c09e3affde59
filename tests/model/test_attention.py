import torch

from detr.model.attention import MultiHeadAttention


def test_matches_torch_multihead_attention_with_padding():
    ours = MultiHeadAttention(16, 4).eval()
    reference = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    reference.load_state_dict(ours.state_dict())
    q, k, v = torch.randn(2, 5, 16), torch.randn(2, 7, 16), torch.randn(2, 7, 16)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 4:] = True
    out, weights = ours(q, k, v, pad, need_weights=True)
    ref_out, ref_weights = reference(q, k, v, key_padding_mask=pad, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=1e-5)


def test_weights_are_the_ones_used():
    attn = MultiHeadAttention(16, 4).eval()
    q, kv = torch.randn(1, 3, 16), torch.randn(1, 6, 16)
    pad = torch.tensor([[False, False, False, False, True, True]])
    out_plain, none = attn(q, kv, kv, pad)
    out, weights = attn(q, kv, kv, pad, need_weights=True)
    assert none is None
    assert torch.equal(out, out_plain)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 4, 3))
    assert torch.all(weights[..., 4:] == 0)
    # Recompute the output from the weights: they are the ones SDPA applied.
    w_v, b_v = attn.in_proj_weight.chunk(3)[2], attn.in_proj_bias.chunk(3)[2]
    v = torch.nn.functional.linear(kv, w_v, b_v).view(1, 6, 4, 4).transpose(1, 2)
    mixed = (weights @ v).transpose(1, 2).reshape(1, 3, 16)
    torch.testing.assert_close(attn.out_proj(mixed), out, atol=1e-5, rtol=1e-5)


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
