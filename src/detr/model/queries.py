"""Query sources: where the decoder's queries come from.

Each takes the encoded image and the number of query groups G (Group DETR: group g's queries
are rows g*N .. (g+1)*N - 1 of the learned tables; inference uses group 0) and returns
`DecoderQueries` with B x G batch entries, entry b x G + g being image b's group g. Selected
queries also take what the model's query selection chose among the encoder's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from detr.model.anchor_decoder import inverse_sigmoid
from detr.model.encoded import EncodedImage
from detr.model.outputs import TokenProposals
from detr.model.query_selection import Selection


@dataclass
class DecoderQueries:
    """content [B x G, N, D]: the learned vectors (the paper's decoder uses them as positional
    queries); anchors [B x G, N, 4] inverse-sigmoid cxcywh, or None for the paper's queries;
    proposals: query selection's per-token outputs, which get a loss of their own, or None."""

    content: torch.Tensor
    anchors: torch.Tensor | None = None
    proposals: TokenProposals | None = None


def _per_image(table: torch.Tensor, batch: int, groups: int, queries: int) -> torch.Tensor:
    """The first `groups` groups of a learned [G_max x N, C] table as [B x G, N, C]."""
    rows = table[: groups * queries].view(groups, queries, -1)
    return rows[None].expand(batch, -1, -1, -1).flatten(0, 1)


class LearnedQueries(nn.Module):
    """The paper's object queries: one learned vector each."""

    def __init__(self, num_queries: int, groups: int, dim: int) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.embed = nn.Embedding(num_queries * groups, dim)

    def forward(self, encoded: EncodedImage, groups: int, selection: Selection | None = None) -> DecoderQueries:
        batch = encoded.memory.shape[0]
        return DecoderQueries(_per_image(self.embed.weight, batch, groups, self.num_queries))


class LearnedAnchors(nn.Module):
    """DAB-DETR's queries: a learned content vector and a learned anchor box each."""

    def __init__(self, num_queries: int, groups: int, dim: int) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.content = nn.Embedding(num_queries * groups, dim)
        self.anchor = nn.Embedding(num_queries * groups, 4)  # inverse-sigmoid cxcywh
        with torch.no_grad():
            count = num_queries * groups
            boxes = torch.cat([torch.rand(count, 2), torch.full((count, 2), 0.1)], dim=1)
            self.anchor.weight.copy_(inverse_sigmoid(boxes))

    def forward(self, encoded: EncodedImage, groups: int, selection: Selection | None = None) -> DecoderQueries:
        batch = encoded.memory.shape[0]
        return DecoderQueries(_per_image(self.content.weight, batch, groups, self.num_queries),
                              _per_image(self.anchor.weight, batch, groups, self.num_queries))


class SelectedQueries(nn.Module):
    """Two-stage queries: the anchors that query selection chose per image among the encoder
    tokens' proposals, and a learned content vector each, plus (with `selected_content`, RT-DETR)
    the chosen tokens' features. Every group starts from the same anchors; its own vectors keep
    the groups apart."""

    def __init__(self, num_queries: int, groups: int, dim: int, selected_content: bool) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.content = nn.Embedding(num_queries * groups, dim)
        self.selected_content = selected_content
        # Checkpoints written before 2026-11-29 hold learned anchors that this source never reads.
        self.register_load_state_dict_pre_hook(_skip_unused_anchors)

    def forward(self, encoded: EncodedImage, groups: int, selection: Selection | None = None) -> DecoderQueries:
        if selection is None:
            raise ValueError("selected queries need the model's query selection")
        batch = encoded.memory.shape[0]
        content = _per_image(self.content.weight, batch, groups, self.num_queries)
        proposals, anchors, selected = selection
        if self.selected_content:
            content = content + selected.repeat_interleave(groups, 0)
        return DecoderQueries(content, anchors.repeat_interleave(groups, 0), proposals)


def _skip_unused_anchors(module, state_dict, prefix, *args) -> None:
    state_dict.pop(prefix + "anchor.weight", None)
