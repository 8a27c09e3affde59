"""Anchor-box queries refined layer by layer (DAB-DETR, Deformable DETR's box refinement).

Each query carries a box. Its positional query is an MLP of the box's sine
encoding, so cross-attention looks where the box is; each decoder layer
predicts a correction in inverse-sigmoid space, and the corrected box (cut
from the graph, as in Deformable DETR) is the next layer's anchor.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from detr.model.multi_scale import Levels, levels_of
from detr.model.transformer import AttentionMaps, Transformer

if TYPE_CHECKING:
    from detr.model.encoded import EncodedImage
    from detr.model.queries import DecoderQueries


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def box_sine_encoding(boxes: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """[..., 4] normalised cxcywh -> [..., 4 * dim / 2]: each coordinate encoded as the
    paper's sine position encoding encodes x or y (dim / 2 channels each)."""
    half = dim // 2
    index = torch.arange(half, dtype=torch.float32, device=boxes.device)
    frequencies = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / half)
    angles = boxes.float()[..., None] * (2 * math.pi) / frequencies  # [..., 4, half]
    encoded = torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)
    return encoded.flatten(-2).to(boxes.dtype)


class AnchorDecoder(nn.Module):
    """Runs the transformer's decoder layers on (content, anchor box) queries.

    The layers, their final norm and the box head are the model's own; this
    module adds only the MLP that turns a box into a positional query. `deformable`: the
    layers' cross-attention samples around each box, so they are told the memory's levels.
    """

    def __init__(self, dim: int, deformable: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.deformable = deformable
        self.query_pos_head = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, transformer: Transformer, box_head: nn.Module, queries: DecoderQueries,
                encoded: EncodedImage, maps: AttentionMaps | None = None, need_weights: bool = False,
                self_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """queries: content [B x G, N, D] and anchors [B x G, N, 4] in inverse-sigmoid space, G batch
        entries an image (query groups; G = 1 without); the encoded image's memory is one an
        image; self_mask [B x G, 1, N, N]: added to every self-attention's scores (-inf: hidden),
        as JointQueries lays out query sets that must not see each other.

        Returns every layer's normalised output [layers, B x G, N, D] and box [layers, B x G, N, 4]
        (sigmoid cxcywh).
        """
        levels = levels_of(encoded.feature_masks) if self.deformable else None
        return self.refine(transformer, box_head, queries.content, queries.anchors, encoded.memory, encoded.pos,
                           encoded.padding, self_mask, maps, need_weights, levels)

    def refine(self, transformer: Transformer, box_head: nn.Module, content: torch.Tensor, anchors: torch.Tensor,
               memory: torch.Tensor, pos: torch.Tensor, padding_mask: torch.Tensor | None,
               self_mask: torch.Tensor | None, maps: AttentionMaps | None, need_weights: bool,
               levels: Levels | None) -> tuple[torch.Tensor, torch.Tensor]:
        tgt, reference = content, anchors
        outputs, boxes = [], []
        for layer in transformer.decoder_layers:
            anchor = reference.sigmoid()
            query_pos = self.query_pos_head(box_sine_encoding(anchor, self.dim))
            tgt, self_weights, cross_weights = layer(tgt, memory, pos, query_pos, padding_mask, need_weights,
                                                     boxes=anchor, levels=levels, self_bias=self_mask)
            out = transformer.decoder_norm(tgt)
            correction = box_head(out)
            box_logit = reference + correction
            outputs.append(out)
            boxes.append(box_logit.sigmoid())
            reference = box_logit.detach()  # the next layer's anchor: each layer learns its own correction
            if maps is not None:
                maps.decoder_self.append(self_weights)
                maps.decoder_cross.append(cross_weights)
        return torch.stack(outputs), torch.stack(boxes)
