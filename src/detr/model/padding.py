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
import torch.nn.functional as F
from torch import nn


def image_cells(mask: torch.Tensor, halvings: int) -> torch.Tensor:
    """mask [B, H, W] True on padding -> [B, 1, h, w] True on the cells that the image alone has in
    a map `halvings` stride-2 layers down (stride 2 ** halvings)."""
    return _halved([(~mask)[:, None].float()], halvings) > 0


def _halved(pyramid: list[torch.Tensor], halvings: int) -> torch.Tensor:
    """The image cells [B, 1, h, w] (1 on image) `halvings` levels down a pyramid that starts at
    the image, extending it as needed. Every other row and column: n rows become
    (n - 1) // 2 + 1 and v image rows ceil(v / 2), as 'same'-padded stride-2 layers do, by the
    very formula of a stride-2 convolution's size (so that a compiled model, whose sizes are
    symbols, sees them equal without a guard on the input size). Levels are counted, not
    matched by size, for the same reason."""
    while len(pyramid) <= halvings:
        pyramid.append(F.max_pool2d(pyramid[-1], kernel_size=1, stride=2))
    return pyramid[halvings]


def coarser_cells(cells: torch.Tensor, halvings: int = 1) -> torch.Tensor:
    """Image cells [B, 1, h, w] (from `image_cells`) `halvings` stride-2 layers further down."""
    return _halved([cells.float()], halvings) > 0


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
    alone reads -inf: the same maximum after a ReLU, whose outputs are never negative. Each
    layer's input stride is read once, from a 64x64 forward at construction."""

    PROBE = 64

    def __init__(self, network: nn.Module) -> None:
        self.mask: torch.Tensor | None = None
        self._cells: list[torch.Tensor] = []  # image cells at each halving, while a mask is active
        layers = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
        widths: dict[nn.Module, int] = {}
        probes = [m.register_forward_pre_hook(lambda m, inputs: widths.__setitem__(m, inputs[0].shape[-1]))
                  for m in layers]
        training = network.training
        with torch.no_grad():
            network.eval()(torch.zeros(1, 3, self.PROBE, self.PROBE))
        network.train(training)
        for probe in probes:
            probe.remove()
        self.halvings = {m: round(math.log2(self.PROBE / widths[m])) for m in layers}
        for layer in layers:
            layer.register_forward_pre_hook(self._zero_padding)

    def _zero_padding(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
        if self.mask is None:
            return None
        if not self._cells:  # made once a forward: a ResNet's stages convolve maps of a few sizes many times
            self._cells.append((~self.mask)[:, None].float())
        x, halvings = inputs[0], self.halvings[module]
        keep = _halved(self._cells, halvings).to(x.dtype)
        if halvings > 0 and not torch.is_grad_enabled() and not torch.jit.is_tracing():
            # Inference: in place on the activation (never the caller's images), which saves
            # allocating a map a layer; only padding cells change, which nothing reads unzeroed.
            return (x.mul_(keep),)
        return (x * keep,)

    @contextmanager
    def active(self, mask: torch.Tensor | None) -> Iterator[None]:
        """Zero the padding of `mask` [B, H, W] (None: nothing) inside the block. Always with a
        mask, even one without padding: a traced graph keeps what its example input took."""
        self.mask = mask
        try:
            yield
        finally:
            self.mask, self._cells = None, []
