"""Multi-scale input tokens (Deformable DETR): several backbone levels, flattened together.

The levels are the last backbone stages (strides 8/16/32 for layer2-4) and,
past those, extra stride-2 convolutions (stride 64 after layer4). Each level
gets a 1x1 (extra levels: 3x3 stride-2) conv + GroupNorm to the model width,
its own padding mask and sine positions, and a learned level embedding added
to the positions so that attention can tell levels apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from detr.model.backbone import level_mask

_STAGES = ("layer2", "layer3", "layer4")


@dataclass
class Levels:
    """Where each level lies in the flattened tokens."""

    shapes: list[tuple[int, int]]  # (h, w) per level, finest first
    start_index: torch.Tensor  # [levels] first token of each level
    masks: list[torch.Tensor]  # [B, h, w] per level, True on padding (all False without padding)
    valid_ratios: torch.Tensor  # [B, levels, 2] (x, y): the unpadded share of each level's map


def backbone_stages(last_layer: str, levels: int) -> tuple[tuple[str, ...], int]:
    """The backbone stages that give `levels` levels, and how many extra convs follow them."""
    available = _STAGES[: _STAGES.index(last_layer) + 1]
    stages = available[max(0, len(available) - levels):]
    return stages, levels - len(stages)


def group_norm(dim: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, dim), dim)  # 32 groups as in Deformable DETR, fewer for narrow models


class MultiScaleInput(nn.Module):
    """Backbone maps (and extra levels) -> tokens [B, L, D], positions [B, L, D], padding, Levels."""

    def __init__(self, stage_channels: list[int], dim: int, extra_levels: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, dim, kernel_size=1), group_norm(dim)) for channels in stage_channels
        )
        # The first extra level reads the last backbone map, later ones the previous extra level.
        extra_inputs = [stage_channels[-1]] + [dim] * (extra_levels - 1)
        self.extra = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, dim, kernel_size=3, stride=2, padding=1), group_norm(dim))
            for channels in extra_inputs[:extra_levels]
        )
        self.level_embed = nn.Parameter(torch.empty(len(stage_channels) + extra_levels, dim))
        for conv in [p[0] for p in self.projections] + [p[0] for p in self.extra]:
            nn.init.xavier_uniform_(conv.weight, gain=1)
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.level_embed)

    def forward(self, features: list[torch.Tensor], mask: torch.Tensor | None, position_encoding: nn.Module
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Levels]:
        """features: the backbone stages' maps, finest first; mask [B, H, W] True on padding or None."""
        maps = [project(f) for project, f in zip(self.projections, features)]
        previous = features[-1]
        for conv in self.extra:
            previous = conv(previous)
            maps.append(previous)
        batch = maps[0].shape[0]
        tokens, positions, masks = [], [], []
        for level, level_map in enumerate(maps):
            size = level_map.shape[-2:]
            mask_of_level = level_mask(mask, batch, size, level_map.device)
            pos = position_encoding(level_map, mask_of_level) + self.level_embed[level][:, None, None]
            tokens.append(level_map.flatten(2).transpose(1, 2))
            positions.append(pos.flatten(2).transpose(1, 2))
            masks.append(mask_of_level)
        padding = None if mask is None else torch.cat([m.flatten(1) for m in masks], dim=1)
        return torch.cat(tokens, dim=1), torch.cat(positions, dim=1), padding, levels_of(masks)


def levels_of(masks: list[torch.Tensor]) -> Levels:
    """The levels of tokens flattened one map after another, from each map's padding mask [B, h, w]."""
    shapes = [tuple(m.shape[-2:]) for m in masks]
    counts = torch.tensor([h * w for h, w in shapes], device=masks[0].device)
    start_index = torch.cat([counts.new_zeros(1), counts.cumsum(0)[:-1]])
    valid_ratios = torch.stack([_valid_ratio(m) for m in masks], dim=1)
    return Levels(shapes, start_index, masks, valid_ratios)


def _valid_ratio(mask: torch.Tensor) -> torch.Tensor:
    """[B, h, w] padding mask -> [B, 2] (x, y) share of the map that is image."""
    height, width = mask.shape[-2:]
    valid_h = (~mask[:, :, 0]).sum(1).float() / height
    valid_w = (~mask[:, 0, :]).sum(1).float() / width
    return torch.stack([valid_w, valid_h], dim=-1)
