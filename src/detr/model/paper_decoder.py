"""The paper's decoder: learned queries as positions, content starting at zero, boxes from the head."""

from __future__ import annotations

import torch
from torch import nn

from detr.model.encoded import EncodedImage
from detr.model.queries import DecoderQueries
from detr.model.transformer import AttentionMaps, Transformer


class PaperDecoder(nn.Module):
    def forward(self, transformer: Transformer, box_head: nn.Module, queries: DecoderQueries,
                encoded: EncodedImage, maps: AttentionMaps, need_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every layer's normalised output [layers, B x G, N, D] and box [layers, B x G, N, 4]
        (sigmoid cxcywh)."""
        hidden = transformer.decode_groups(encoded.memory, encoded.pos, queries.content, encoded.padding, maps,
                                           need_weights)
        return hidden, box_head(hidden).sigmoid()
