"""Multi-head attention through scaled_dot_product_attention, with optional weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def additive_mask(hidden: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask (True: hidden) as scores to add: -inf where hidden, 0 elsewhere. The same
    softmax as masking, and in the ONNX graph one broadcast Add instead of a select over every
    score and a NaN clean-up after the softmax."""
    return torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill(hidden, float("-inf"))


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, D] -> [B, heads, L, D / heads]."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


class _FusedForOnnxRuntime(torch.autograd.Function):
    """Attention over projected q [B, Lq, dim], k and v [B, Lk, dim] with `heads` heads and a key
    padding mask (True on padding, or None), for the ONNX export only: it exports as onnxruntime's
    fused com.microsoft.MultiHeadAttention. The graph then holds no [B, heads, Lq, Lk] scores,
    their padding Add and Softmax, which were the exported encoder's costliest nodes at batch 8."""

    @staticmethod
    def forward(ctx, q, k, v, padding, heads, dim):
        bias = None if padding is None else additive_mask(padding, q.dtype)[:, None, None]
        split = [split_heads(x, heads) for x in (q, k, v)]
        return F.scaled_dot_product_attention(*split, attn_mask=bias).transpose(1, 2).flatten(2)

    @staticmethod
    def symbolic(g, q, k, v, padding, heads, dim):
        if padding is None or padding.node().mustBeNone():
            return g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=heads)
        # The op's optional q/k/v bias sits before the mask: zeros. Its mask is 1 on tokens to attend.
        no_bias = g.op("Constant", value_t=torch.zeros(3 * dim))
        attend = g.op("Cast", g.op("Not", padding), to_i=6)  # INT32
        return g.op("com.microsoft::MultiHeadAttention", q, k, v, no_bias, attend, num_heads_i=heads)


class MultiHeadAttention(nn.Module):
    """Batch-first multi-head attention with the reference's packed input projection.

    The weights are kept as `in_proj_weight` [3D, D] (q, k, v stacked) and
    `out_proj`, as in torch.nn.MultiheadAttention and the official checkpoints.
    The output always comes from SDPA; when `need_weights` is set, the softmax
    weights are computed beside it from the same q and k, so capturing them
    cannot change the result.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dim = dim
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query [B, Lq, D], key/value [B, Lk, D], key_padding_mask [B, Lk] True on padding,
        attn_bias [B, heads, Lq, Lk]: added to the scores before the softmax.

        Returns the output [B, Lq, D] and, if asked, weights [B, heads, Lq, Lk].
        """
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
        if torch.onnx.is_in_onnx_export() and attn_bias is None and not need_weights:
            return self.out_proj(_FusedForOnnxRuntime.apply(q, k, v, key_padding_mask, self.num_heads, self.dim)), None
        q, k, v = (split_heads(x, self.num_heads) for x in (q, k, v))
        bias = None if key_padding_mask is None else additive_mask(key_padding_mask[:, None, None, :], q.dtype)
        if attn_bias is not None:
            bias = attn_bias.to(q.dtype) if bias is None else attn_bias.to(q.dtype) + bias
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
            if bias is not None:
                scores = scores + bias
            weights = scores.softmax(dim=-1)
        batch, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, length, -1)
        return self.out_proj(out), weights
