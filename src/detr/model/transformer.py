"""The DETR encoder-decoder transformer (post-norm by default, pre-norm optional).

Tokens are batch-first [B, L, D]. Positions are added to queries and keys of
every attention, never to values; the learned object queries act as the
decoder's positions and its input starts at zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from detr.model.attention import MultiHeadAttention
from detr.model.deformable_attention import MultiScaleDeformableAttention, attention_over_tokens
from detr.model.multi_scale import Levels


@dataclass
class AttentionMaps:
    """Attention weights [B, heads, Lq, Lk] per layer, filled only when asked for."""

    encoder: list[torch.Tensor]
    decoder_self: list[torch.Tensor]
    decoder_cross: list[torch.Tensor]


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))


class _Residual(nn.Module):
    """x + dropout(f(x)) with the LayerNorm after (post-norm) or before (pre-norm) f."""

    def __init__(self, dim: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def branch_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) if self.pre_norm else x

    def merge(self, x: torch.Tensor, branch_output: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(branch_output)
        return x if self.pre_norm else self.norm(x)


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn, dropout)
        self.attn_block = _Residual(dim, dropout, pre_norm)
        self.ffn_block = _Residual(dim, dropout, pre_norm)

    def forward(self, src, pos, padding_mask, need_weights=False):
        x = self.attn_block.branch_input(src)
        q = k = x + pos
        attended, weights = self.self_attn(q, k, x, padding_mask, need_weights)
        src = self.attn_block.merge(src, attended)
        src = self.ffn_block.merge(src, self.ffn(self.ffn_block.branch_input(src)))
        return src, weights


class DecoderLayer(nn.Module):
    """deformable_levels > 0: cross-attention samples `points` points per head on each of that
    many levels around the query's box (Deformable DETR's decoder) instead of attending all tokens."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, pre_norm: bool,
                 deformable_levels: int = 0, points: int = 4) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.cross_attn = (MultiScaleDeformableAttention(dim, heads, deformable_levels, points) if deformable_levels
                           else MultiHeadAttention(dim, heads, dropout))
        self.ffn = FeedForward(dim, ffn, dropout)
        self.self_block = _Residual(dim, dropout, pre_norm)
        self.cross_block = _Residual(dim, dropout, pre_norm)
        self.ffn_block = _Residual(dim, dropout, pre_norm)

    def forward(self, tgt, memory, pos, query_pos, padding_mask, need_weights=False,
                boxes: torch.Tensor | None = None, levels: Levels | None = None,
                self_bias: torch.Tensor | None = None):
        """boxes [B (x G), N, 4] (sigmoid cxcywh of the image) and levels: where deformable
        cross-attention samples; unused by full attention. self_bias [B (x G), heads or 1, N, N]:
        added to the self-attention's scores (the mask between query sets), or None."""
        x = self.self_block.branch_input(tgt)
        q = k = x + query_pos
        attended, self_weights = self.self_attn(q, k, x, None, need_weights, self_bias)
        tgt = self.self_block.merge(tgt, attended)
        x = self.cross_block.branch_input(tgt)
        # memory [B, L, D] may serve G batch entries an image (query groups, entry b x G + g). Each
        # query attends the memory on its own, so the groups fold into one image's queries and
        # the keys and values are projected once an image, not once a group.
        queries = (x + query_pos).reshape(memory.shape[0], -1, x.shape[-1])
        if isinstance(self.cross_attn, MultiScaleDeformableAttention):
            if boxes is None or levels is None:
                raise ValueError("deformable cross-attention samples around each query's box: "
                                 "it needs anchor-box queries (model.queries 'anchors' or 'selected')")
            ratios = levels.valid_ratios.repeat(1, 1, 2)  # [B, levels, 4]: the image's share of each map
            reference = boxes.reshape(memory.shape[0], -1, 1, 4) * ratios[:, None]
            attended = self.cross_attn(queries, reference, memory, levels.shapes, padding_mask)
            cross_weights = None
            if need_weights:  # the sampled points spread over the cells they read
                cross_weights = attention_over_tokens(levels.shapes, *self.cross_attn.sampling(
                    queries, reference, levels.shapes))
        else:
            attended, cross_weights = self.cross_attn(queries, memory + pos, memory, padding_mask, need_weights)
        tgt = self.cross_block.merge(tgt, attended.reshape(tgt.shape))
        tgt = self.ffn_block.merge(tgt, self.ffn(self.ffn_block.branch_input(tgt)))
        return tgt, self_weights, cross_weights


class Transformer(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        encoder_layers: int,
        decoder_layers: int,
        ffn: int,
        dropout: float,
        pre_norm: bool,
        decoder_levels: int = 0,
        decoder_points: int = 4,
    ) -> None:
        """decoder_levels > 0: the decoder's cross-attention is deformable, over that many levels."""
        super().__init__()
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(dim, heads, ffn, dropout, pre_norm) for _ in range(encoder_layers)
        )
        # Pre-norm leaves the encoder output un-normalised, so it gets a final norm.
        self.encoder_norm = nn.LayerNorm(dim) if pre_norm else None
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(dim, heads, ffn, dropout, pre_norm, decoder_levels, decoder_points)
            for _ in range(decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(dim)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
        for module in self.modules():  # deformable attention keeps its own initialisation
            if isinstance(module, MultiScaleDeformableAttention):
                module.reset_parameters()

    def decode_groups(self, memory, pos, query_pos, padding_mask, maps: AttentionMaps,
                      need_weights: bool) -> torch.Tensor:
        """memory, pos [B, L, D] (from `encode`); query_pos [B, N, D] or [B x G, N, D]: G groups
        of queries per image, each decoding the image's memory on its own; padding_mask
        [B, L] or None. Returns every decoder layer's normalised output [layers, B (x G), N, D].
        The groups ride as extra batch entries in self-attention (so that they cannot see each
        other) and share their image's memory in cross-attention (`DecoderLayer`)."""
        return self.decode(memory, pos, query_pos, padding_mask, maps, need_weights)

    def encode(self, src, pos, padding_mask, maps: AttentionMaps, need_weights: bool) -> torch.Tensor:
        memory = src
        for layer in self.encoder_layers:
            memory, weights = layer(memory, pos, padding_mask, need_weights)
            maps.encoder.append(weights)
        if self.encoder_norm is not None:
            memory = self.encoder_norm(memory)
        return memory

    def decode(self, memory, pos, query_pos, padding_mask, maps: AttentionMaps, need_weights: bool) -> torch.Tensor:
        tgt = torch.zeros_like(query_pos)
        outputs = []
        for layer in self.decoder_layers:
            tgt, self_weights, cross_weights = layer(tgt, memory, pos, query_pos, padding_mask, need_weights)
            outputs.append(self.decoder_norm(tgt))
            maps.decoder_self.append(self_weights)
            maps.decoder_cross.append(cross_weights)
        return torch.stack(outputs)
