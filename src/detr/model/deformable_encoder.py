"""Deformable DETR's encoder: every token attends to a few points around itself on every level.

Each token's reference point is its own cell centre, in the unpadded part of
its level, carried to every level's map through the valid ratios, so a token
samples the same image location on all levels. Post-norm, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from detr.model.deformable_attention import MultiScaleDeformableAttention
from detr.model.multi_scale import Levels
from detr.model.transformer import FeedForward


def encoder_reference_points(levels: Levels) -> torch.Tensor:
    """[B, L, levels, 2] (x, y) in [0, 1] of each level's map: every token's centre."""
    ratios = levels.valid_ratios  # [B, levels, 2]
    points = []
    for level, (height, width) in enumerate(levels.shapes):
        ys = torch.arange(height, dtype=ratios.dtype, device=ratios.device) + 0.5
        xs = torch.arange(width, dtype=ratios.dtype, device=ratios.device) + 0.5
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        # A share of the unpadded part (clamped: an all-padding level would divide by zero).
        x = x.flatten()[None] / (ratios[:, None, level, 0].clamp(min=1e-6) * width)
        y = y.flatten()[None] / (ratios[:, None, level, 1].clamp(min=1e-6) * height)
        points.append(torch.stack([x, y], dim=-1))
    return torch.cat(points, dim=1)[:, :, None] * ratios[:, None]


class DeformableEncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, levels: int, points: int) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(dim, heads, levels, points)
        self.ffn = FeedForward(dim, ffn, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src, pos, reference, shapes: list[tuple[int, int]], padding_mask):
        attended = self.self_attn(src + pos, reference, src, shapes, padding_mask)
        src = self.attn_norm(src + self.dropout(attended))
        return self.ffn_norm(src + self.dropout(self.ffn(src)))


class DeformableEncoder(nn.Module):
    def __init__(self, dim: int, heads: int, layers: int, ffn: int, dropout: float, levels: int,
                 points: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(dim, heads, ffn, dropout, levels, points) for _ in range(layers)
        )
        for layer in self.layers:  # xavier everywhere but the attention, which has its own init
            for parameter in layer.ffn.parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_uniform_(parameter)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, padding_mask: torch.Tensor | None,
                levels: Levels) -> torch.Tensor:
        """src, pos [B, L, D] (pos holding the level embeddings); padding_mask [B, L] or None."""
        reference = encoder_reference_points(levels)
        for layer in self.layers:
            src = layer(src, pos, reference, levels.shapes, padding_mask)
        return src
