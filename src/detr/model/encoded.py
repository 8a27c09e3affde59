"""What the encoder hands the query source and the decoder: the image's tokens and their layout."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EncodedImage:
    """memory, pos [B, L, D]: the tokens and their positions, the fine level's first when there is
    one (pos None when the decoder reads no positions: a fine level for deformable attention);
    padding [B, L] True on padding tokens, or None; feature_masks: [B, h, w] per level (finest
    first), whose cells are `memory`'s tokens in order; shape: the encoder's own grid (h, w);
    fine_shape: the fine level's grid, or None."""

    memory: torch.Tensor
    pos: torch.Tensor | None
    padding: torch.Tensor | None
    feature_masks: list[torch.Tensor]
    shape: tuple[int, int]
    fine_shape: tuple[int, int] | None = None
