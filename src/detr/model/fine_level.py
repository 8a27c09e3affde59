"""A finer level after the encoder, by convolution (RT-DETR's cross-scale fusion, top-down).

Full attention over a stride-8 map costs four times the tokens of the stride-16
map squared (2.2 s a training step on CPU against 0.95 s). Here the encoder
attends over the coarse map alone, as in the paper; its output is then
upsampled onto the backbone's previous stage (stride 8 for layer3), added to
that stage's projection and mixed by a residual 3x3 conv block, as RT-DETR's
CCFM does. The decoder, query selection and the dense heads read both levels,
the fine tokens first: small objects get cells their own size, and every
fine token still carries what the encoder learned about the whole image.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from detr.model.multi_scale import group_norm
from detr.model.padding import run_masked


def conv_mix(dim: int, convs: int) -> nn.Sequential | None:
    """RT-DETR's mix: `convs` 3x3 convolutions, each followed by a GroupNorm and all but the
    last by a ReLU; None for 0 (the projection and the upsampled memory alone)."""
    return _mix([[nn.Conv2d(dim, dim, kernel_size=3, padding=1)] for _ in range(convs)], dim)


def separable_mix(dim: int, convs: int) -> nn.Sequential | None:
    """The same mix with each 3x3 convolution split into a depthwise 3x3 and a pointwise 1x1
    (MobileNet's separable convolution): the same receptive field at about an eighth of the
    FLOPs for 128 channels (9 + 128 multiply-adds a channel and pixel instead of 9 x 128)."""
    return _mix([[nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim), nn.Conv2d(dim, dim, kernel_size=1)]
                 for _ in range(convs)], dim)


FINE_LEVEL_MIXES = {"conv": conv_mix, "separable": separable_mix}


def _mix(blocks: list[list[nn.Module]], dim: int) -> nn.Sequential | None:
    layers: list[nn.Module] = []
    for index, block in enumerate(blocks):
        layers += [*block, group_norm(dim)]
        if index < len(blocks) - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers) if layers else None


class FineLevel(nn.Module):
    def __init__(self, channels: int, dim: int, make_mix: Callable[[int], nn.Module | None],
                 positions: bool = True) -> None:
        """channels: the backbone stage's; make_mix(dim): the residual block on the fused map
        (`conv_mix`, `separable_mix` with their convolution count), or None to add the projection
        and the upsampled memory alone. Made here, after the projection, so that a seed gives the
        weights it gave before the mix was a choice. positions: whether the decoder reads the
        tokens' positions (full attention does; deformable attention samples by location, so
        without them the level computes none and has no level embedding)."""
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(channels, dim, kernel_size=1), group_norm(dim))
        self.mix = make_mix(dim)
        level_embed = torch.empty(dim)  # tells the decoder's keys which level
        nn.init.xavier_uniform_(self.project[0].weight, gain=1)
        nn.init.zeros_(self.project[0].bias)
        nn.init.normal_(level_embed)  # drawn either way, so that a seed gives the weights it gave before
        self.level_embed = nn.Parameter(level_embed) if positions else None
        self.register_load_state_dict_pre_hook(_skip_unused_level_embed)

    def forward(self, fine_map: torch.Tensor, memory: torch.Tensor, coarse_shape: tuple[int, int],
                cells: torch.Tensor | None, position_encoding: nn.Module
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """fine_map [B, C, H, W] (the backbone's earlier stage); memory [B, h*w, D] (the
        encoder's output on the coarse map of `coarse_shape`); cells [B, 1, H, W] True on the
        cells of each image (padding.image_cells), or None without padding. Returns the fine
        tokens [B, H*W, D], their positions [B, H*W, D] (None without `positions`) and their padding
        mask [B, H, W]."""
        size = fine_map.shape[-2:]
        coarse = memory.transpose(1, 2).unflatten(2, coarse_shape)
        # In a padded batch, the padding is zeroed before each convolution and left out of each
        # GroupNorm's statistics, so that each image's tokens are its own (padding.py).
        keep = None if cells is None else cells.to(fine_map.dtype)
        fused = run_masked(self.project, fine_map, keep) + F.interpolate(coarse, size=size, mode="nearest")
        if self.mix is not None:
            fused = fused + run_masked(self.mix, fused, keep)  # signed, as the encoder's LayerNorm-ed tokens
        fine_mask = (torch.zeros(fused.shape[0], *size, dtype=torch.bool, device=fused.device) if cells is None
                     else ~cells[:, 0])
        tokens = fused.flatten(2).transpose(1, 2)
        if self.level_embed is None:
            return tokens, None, fine_mask
        pos = position_encoding(fused, fine_mask) + self.level_embed[:, None, None]
        return tokens, pos.flatten(2).transpose(1, 2), fine_mask


def _skip_unused_level_embed(module: FineLevel, state_dict, prefix, *args) -> None:
    """Checkpoints of deformable decoders written before the level went without positions hold a
    level embedding that nothing read."""
    if module.level_embed is None:
        state_dict.pop(prefix + "level_embed", None)
