"""Padded batches that compute what each image alone computes.

A batch pads its images to one size. A convolution at an image's border then reads the
padding's activations instead of its own zero padding, and a GroupNorm takes statistics over
the padding too, so an image's features depended on the other images of its batch: on the
default's small images (12 rows at stride 16) the last few rows changed, and one checkpoint
scored AP 0.598 on `general` one image at a time, 0.535 in batches of 2 and 0.455 in batches
of 8. Zeroing the padding before every convolution and pooling, normalising over the image's
cells alone and masking exactly the cells that an image alone has makes the batch's
outputs those of each image alone (tests/model/test_padding.py), for ResNet backbones; a
RegNet's squeeze-and-excitation still averages over its padding.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


def image_cells(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """mask [B, H, W] True on padding -> [B, 1, h, w] True on the cells of a map of `size` that the
    image alone would have: ceil(valid / stride) rows and columns, as stride-2 convolutions with
    'same' padding (ResNet's) shrink a map. The stride is the power of two nearest H / h."""
    height, width = size
    rows = (~mask[:, :, 0]).sum(1)
    cols = (~mask[:, 0, :]).sum(1)
    row_stride = 2 ** round(math.log2(mask.shape[1] / height))
    col_stride = 2 ** round(math.log2(mask.shape[2] / width))
    rows = torch.div(rows + row_stride - 1, row_stride, rounding_mode="floor")
    cols = torch.div(cols + col_stride - 1, col_stride, rounding_mode="floor")
    inside_rows = torch.arange(height, device=mask.device)[None, :, None] < rows[:, None, None]
    inside_cols = torch.arange(width, device=mask.device)[None, None, :] < cols[:, None, None]
    return (inside_rows & inside_cols)[:, None]


def padding_of(mask: torch.Tensor | None, batch: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A map's [B, h, w] padding mask, True off `image_cells`; all False without a mask."""
    if mask is None:
        return torch.zeros(batch, *size, dtype=torch.bool, device=device)
    return ~image_cells(mask, size)[:, 0]


def masked_group_norm(norm: nn.GroupNorm, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`norm` with its statistics over the cells where keep [B, 1, h, w] is True."""
    batch, channels, height, width = x.shape
    groups = norm.num_groups
    weight = keep.to(x.dtype).unsqueeze(1)  # [B, 1, 1, h, w]
    grouped = x.view(batch, groups, channels // groups, height, width)
    count = weight.sum((2, 3, 4), keepdim=True).clamp(min=1) * (channels // groups)
    mean = (grouped * weight).sum((2, 3, 4), keepdim=True) / count
    variance = ((grouped - mean).square() * weight).sum((2, 3, 4), keepdim=True) / count
    normalised = ((grouped - mean) * torch.rsqrt(variance + norm.eps)).view(batch, channels, height, width)
    if norm.affine:
        normalised = normalised * norm.weight[:, None, None] + norm.bias[:, None, None]
    return normalised


def run_masked(layers: nn.Sequential, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """`layers` on x [B, C, h, w] with the padding (keep False) zeroed before each convolution
    and left out of each GroupNorm's statistics; plain `layers(x)` when keep is None."""
    if keep is None:
        return layers(x)
    for layer in layers:
        if isinstance(layer, nn.GroupNorm):
            x = masked_group_norm(layer, x, keep)
        elif isinstance(layer, nn.Conv2d):
            x = layer(x * keep)
        else:
            x = layer(x)
    return x


class ZeroPaddingBeforeConvolutions:
    """Forward pre-hooks on a network's convolutions and max-pools that zero the input's padding
    while `active(mask)` holds the batch's image mask. Max-pooling reads zeros where an image
    alone reads -inf: the same maximum after a ReLU, whose outputs are never negative."""

    def __init__(self, network: nn.Module) -> None:
        self.mask: torch.Tensor | None = None
        self._cells: dict[tuple, torch.Tensor] = {}  # per map size and dtype, while a mask is active
        for module in network.modules():
            if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
                module.register_forward_pre_hook(self._zero_padding)

    def _zero_padding(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
        if self.mask is None:
            return None
        x = inputs[0]
        key = (*x.shape[-2:], x.dtype)
        if key not in self._cells:  # a ResNet's stages convolve maps of a few sizes many times
            self._cells[key] = image_cells(self.mask, x.shape[-2:]).to(x.dtype)
        return (x * self._cells[key],)

    @contextmanager
    def active(self, mask: torch.Tensor | None) -> Iterator[None]:
        """Zero the padding of `mask` [B, H, W] (None: nothing) inside the block. Always with a
        mask, even one without padding: a traced graph keeps what its example input took."""
        self.mask = mask
        try:
            yield
        finally:
            self.mask, self._cells = None, {}
