"""Positional encodings for the flattened feature map: fixed 2-D sine, or learned."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinePositionEncoding(nn.Module):
    """The 2-D sine encoding of the paper's reference code.

    Coordinates are cumulative sums over the *unpadded* pixels, normalised to
    (0, 2π], so padding never shifts the encoding of real pixels. The first
    half of the channels encodes y, the second x; within each half, sine and
    cosine alternate over frequencies temperature^(2i/d).
    """

    def __init__(self, num_channels: int, temperature: float = 10000.0, scale: float = 2 * math.pi):
        super().__init__()
        if num_channels % 4:
            raise ValueError(f"sine encoding needs a channel count divisible by 4, got {num_channels}")
        self.half = num_channels // 2
        self.temperature = temperature
        self.scale = scale

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, _, height, width = features.shape
        if mask is None:
            mask = torch.zeros(batch, height, width, dtype=torch.bool, device=features.device)
        not_mask = (~mask).to(torch.float32)
        y = not_mask.cumsum(1)
        x = not_mask.cumsum(2)
        eps = 1e-6
        y = y / (y[:, -1:, :] + eps) * self.scale
        x = x / (x[:, :, -1:] + eps) * self.scale
        index = torch.arange(self.half, dtype=torch.int64, device=features.device).to(torch.float32)
        frequencies = self.temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / self.half)
        pos_x = x[..., None] / frequencies
        pos_y = y[..., None] / frequencies
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).to(features.dtype)


class LearnedPositionEncoding(nn.Module):
    """Learned row and column embeddings (up to 50x50 feature maps), x half first."""

    def __init__(self, num_channels: int, max_size: int = 50):
        super().__init__()
        self.row_embed = nn.Embedding(max_size, num_channels // 2)
        self.col_embed = nn.Embedding(max_size, num_channels // 2)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, _, height, width = features.shape
        limit = self.row_embed.num_embeddings
        if height > limit or width > limit:
            raise ValueError(f"learned position encoding covers {limit}x{limit} features, got {height}x{width}")
        cols = self.col_embed(torch.arange(width, device=features.device))
        rows = self.row_embed(torch.arange(height, device=features.device))
        pos = torch.cat([cols[None].expand(height, -1, -1), rows[:, None].expand(-1, width, -1)], dim=-1)
        return pos.permute(2, 0, 1)[None].expand(batch, -1, -1, -1).to(features.dtype)
