"""Multi-scale deformable attention (Deformable DETR) in plain PyTorch.

Each query looks at a few sampled points per head and per feature level
instead of at every token: the query predicts the points' offsets from its
reference point and their attention weights, and the values are read at
those (fractional) positions by bilinear interpolation. Sampling goes
through torch.nn.functional.grid_sample, so no custom kernel is needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sample_levels(value: torch.Tensor, shapes: list[tuple[int, int]], locations: torch.Tensor,
                  weights: torch.Tensor) -> torch.Tensor:
    """The weighted sum of bilinearly sampled values (zero outside each map).

    value [B, Lv, heads, Dh], the levels' flattened maps one after another;
    locations [B, Lq, heads, levels, points, 2] as (x, y) in [0, 1] of each level's map;
    weights [B, Lq, heads, levels, points]. Returns [B, Lq, heads x Dh].
    """
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    maps = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1  # grid_sample's [-1, 1], align_corners=False: -1 is the map's outer edge
    sampled = []
    for level, (height, width) in enumerate(shapes):
        level_map = maps[level].permute(0, 2, 3, 1).reshape(batch * heads, head_dim, height, width)
        grid = grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, queries, points, 2)
        sampled.append(F.grid_sample(level_map, grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))  # [B x heads, Dh, Lq, points]
    sampled = torch.stack(sampled, dim=-2).flatten(-2)  # [B x heads, Dh, Lq, levels x points]
    weights = weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    out = (sampled * weights).sum(-1)  # [B x heads, Dh, Lq]
    return out.view(batch, heads * head_dim, queries).transpose(1, 2)


class MultiScaleDeformableAttention(nn.Module):
    """Deformable DETR's MSDeformAttn: `points` samples per head and level around a reference."""

    def __init__(self, dim: int, heads: int, levels: int, points: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {heads}")
        self.heads, self.levels, self.points = heads, levels, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation: head h's points start on a ray at angle 2πh/heads,
        point p at distance p + 1 (in cells), with equal attention weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().amax(-1, keepdim=True)  # onto the unit square's border
        grid = directions[:, None, None, :].repeat(1, self.levels, self.points, 1)
        grid = grid * torch.arange(1, self.points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for projection in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(projection.weight)
            nn.init.zeros_(projection.bias)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, value: torch.Tensor,
                shapes: list[tuple[int, int]], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """query [B, Lq, D] (positions already added); reference [B, Lq, levels, 2] points (x, y)
        or [B, Lq, levels, 4] boxes (cx, cy, w, h), normalised to [0, 1] of each level's map;
        value [B, Lv, D], the levels' maps flattened in order, `shapes` their (h, w);
        padding_mask [B, Lv] True on padding. Returns [B, Lq, D]."""
        batch = query.shape[0]
        if sum(h * w for h, w in shapes) != value.shape[1] or len(shapes) != self.levels:
            raise ValueError(f"{len(shapes)} levels of {shapes} do not match {value.shape[1]} values "
                             f"in {self.levels} levels")
        value = self.value_proj(value)
        if padding_mask is not None:
            # A product, not masked_fill: onnxruntime's Where over a broadcast mask took 3x as long.
            value = value * (~padding_mask)[..., None].to(value.dtype)
        value = value.view(batch, value.shape[1], self.heads, -1)
        locations, weights = self.sampling(query, reference, shapes)
        return self.output_proj(sample_levels(value, shapes, locations, weights))

    def sampling(self, query: torch.Tensor, reference: torch.Tensor, shapes: list[tuple[int, int]]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each query samples: locations [B, Lq, heads, levels, points, 2] (x, y) in [0, 1]
        of each level's map, and the points' attention weights [B, Lq, heads, levels, points]."""
        batch, queries, _ = query.shape
        offsets = self.sampling_offsets(query).view(batch, queries, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(batch, queries, self.heads, self.levels * self.points)
        weights = weights.softmax(-1).view(batch, queries, self.heads, self.levels, self.points)
        if reference.shape[-1] == 2:  # offsets are in cells of each level
            cells = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
            start, step = reference[:, :, None, :, None, :], 1 / cells[None, None, None, :, None, :]
        elif reference.shape[-1] == 4:  # offsets are in shares of the box's half size
            start = reference[:, :, None, :, None, :2]
            step = reference[:, :, None, :, None, 2:] * (0.5 / self.points)
        else:
            raise ValueError(f"reference points end in 2 (x, y) or 4 (cx, cy, w, h), not {reference.shape[-1]}")
        # Expanded first, so that the exported graph multiplies and adds tensors of one shape:
        # onnxruntime broadcast over heads and points 7x slower than over nothing.
        shape = offsets.shape
        return start.expand(shape) + offsets * step.expand(shape), weights


def attention_over_tokens(shapes: list[tuple[int, int]], locations: torch.Tensor, weights: torch.Tensor
                          ) -> torch.Tensor:
    """The sampled points as an attention map over the tokens, [B, heads, Lq, Lv]: each point's
    weight spread over the four cells that bilinear sampling reads (align_corners=False, zero
    outside the map), so that map @ values is what `sample_levels` computes. For drawing."""
    batch, queries, heads, _, points, _ = locations.shape
    total = sum(h * w for h, w in shapes)
    attention = weights.new_zeros(batch, heads, queries, total)
    start = 0
    for level, (height, width) in enumerate(shapes):
        x = locations[:, :, :, level, :, 0] * width - 0.5  # pixel coordinates, [B, Lq, heads, points]
        y = locations[:, :, :, level, :, 1] * height - 0.5
        for column in (x.floor(), x.floor() + 1):
            for row in (y.floor(), y.floor() + 1):
                share = (1 - (x - column).abs()) * (1 - (y - row).abs()) * weights[:, :, :, level]
                inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
                index = start + (row.clamp(0, height - 1) * width + column.clamp(0, width - 1)).long()
                attention.scatter_add_(-1, index.permute(0, 2, 1, 3), (share * inside).permute(0, 2, 1, 3))
        start += height * width
    return attention
