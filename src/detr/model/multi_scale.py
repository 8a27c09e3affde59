"""Several feature levels flattened together (the fine level and the encoder's, finest first):
which backbone stages give them, and where each lies among the tokens, for deformable
cross-attention."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

_STAGES = ("layer2", "layer3", "layer4")


@dataclass
class Levels:
    """Where each level lies in the flattened tokens."""

    shapes: list[tuple[int, int]]  # (h, w) per level, finest first
    start_index: torch.Tensor  # [levels] first token of each level
    masks: list[torch.Tensor]  # [B, h, w] per level, True on padding (all False without padding)
    valid_ratios: torch.Tensor  # [B, levels, 2] (x, y): the unpadded share of each level's map


def backbone_stages(last_layer: str, levels: int) -> tuple[str, ...]:
    """The last `levels` backbone stages up to `last_layer` (fewer if there are not as many)."""
    available = _STAGES[: _STAGES.index(last_layer) + 1]
    return available[max(0, len(available) - levels):]


def group_norm(dim: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, dim), dim)  # 32 groups as in Deformable DETR, fewer for narrow models


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
