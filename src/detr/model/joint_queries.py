"""The matching queries and the denoising queries in one decoder pass (DN-DETR's attention mask).

An image's query sets (its G query groups, then its denoising groups) lie side by side along
the query axis, and a self-attention mask lets each set see itself alone, and no denoising
query that only pads. Every set decodes as it would on its own (the cross-attention and the
feed-forward read one query at a time), while the decoder runs once: the memory's values are
projected once a layer for all the sets, and the small operations of a decoder pass are not
paid twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from detr.model.attention import additive_mask
from detr.model.queries import DecoderQueries


@dataclass
class JointQueries:
    """queries: content [B, L, D] and anchors [B, L, 4], L = G x N + G_dn x T; self_mask
    [B, 1, L, L]: 0 where a query may attend, -inf elsewhere."""

    queries: DecoderQueries
    self_mask: torch.Tensor
    groups: int  # query groups: the first groups x per_group positions
    per_group: int
    denoising_groups: int

    def split(self, layers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[layers, B, L, C] -> the matching queries [layers, B, G x N, C] (group g at g x N) and the
        denoising queries [layers, B x G_dn, T, C] (entry b x G_dn + g: image b's group g)."""
        count, batch = layers.shape[:2]
        main = self.groups * self.per_group
        denoising = layers[:, :, main:]
        return layers[:, :, :main], denoising.reshape(count, batch * self.denoising_groups, -1, layers.shape[-1])


def join_queries(main: DecoderQueries, groups: int, denoising: DecoderQueries, denoising_groups: int,
                 padding: torch.Tensor) -> JointQueries:
    """main: [B x G, N, ...] (entry b x G + g); denoising: [B x G_dn, T, ...], `padding` [B x G_dn, T]
    True on the queries that only pad. Both must have anchors."""
    per_group, dn_count = main.content.shape[1], denoising.content.shape[1]
    batch = main.content.shape[0] // groups

    def per_image(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.reshape(batch, -1, *tensor.shape[2:])

    content = torch.cat([per_image(main.content), per_image(denoising.content)], dim=1)
    anchors = torch.cat([per_image(main.anchors), per_image(denoising.anchors)], dim=1)
    device = content.device
    query_set = torch.cat([torch.arange(groups, device=device).repeat_interleave(per_group),
                           groups + torch.arange(denoising_groups, device=device).repeat_interleave(dn_count)])
    same_set = query_set[:, None] == query_set[None]  # [L, L]
    pads = torch.cat([torch.zeros(batch, groups * per_group, dtype=torch.bool, device=device),
                      per_image(padding)], dim=1)  # [B, L]
    # A padding query sees itself, so that no row is all -inf; no real query sees it.
    itself = torch.eye(len(query_set), dtype=torch.bool, device=device)
    visible = same_set & (~pads[:, None, :] | itself)
    self_mask = additive_mask(~visible, content.dtype)[:, None]
    return JointQueries(DecoderQueries(content, anchors, main.proposals), self_mask, groups, per_group,
                        denoising_groups)
