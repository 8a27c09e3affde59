"""Positive queries (Co-DETR's customised positive queries, H-DETR's one-to-many branch).

In training, each object's `per_object` encoder tokens nearest its centre hand their
proposed boxes to the decoder as extra queries that learn that object directly, with
no matching: many positive examples per object and step for the decoder, where the
one-to-one loss gives one. An image's positive queries decode as an extra batch entry,
so the matching queries never see them (as denoising groups); inference has none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PositiveQueries:
    anchors: torch.Tensor  # [B, M, 4] proposals' boxes in inverse-sigmoid space, detached
    owners: torch.Tensor  # [B, M] index of each query's object in the batch's concatenated targets
    padding: torch.Tensor  # [B, M] True on queries that only pad the batch


def positive_queries(box_logits: torch.Tensor, cells: torch.Tensor, valid: torch.Tensor,
                     targets: list[dict], per_object: int) -> PositiveQueries | None:
    """box_logits [B, L, 4]: every token's proposed box (inverse-sigmoid cxcywh); cells [B, L, 4]:
    the tokens' own cells (normalised cxcywh); valid [B, L]: False on padding. targets as the
    criterion takes them. None when the batch holds no object."""
    counts = [len(t["labels"]) for t in targets]
    if sum(counts) == 0 or per_object == 0 or not valid.any(1).all():
        return None
    batch, device = len(targets), box_logits.device
    take = min(per_object, int(valid.sum(1).min()))  # never a padding token
    most = max(counts) * take
    anchors = torch.zeros(batch, most, 4, device=device, dtype=box_logits.dtype)
    owners = torch.zeros(batch, most, dtype=torch.int64, device=device)
    padding = torch.ones(batch, most, dtype=torch.bool, device=device)
    first = 0
    for i, target in enumerate(targets):
        if counts[i]:
            distance = torch.cdist(target["boxes"][:, :2].float(), cells[i, :, :2].float())  # [T, L]
            nearest = distance.masked_fill(~valid[i][None], torch.inf).topk(take, dim=1, largest=False).indices
            size = counts[i] * take
            anchors[i, :size] = box_logits[i, nearest.flatten()].detach()
            owners[i, :size] = first + torch.arange(counts[i], device=device).repeat_interleave(take)
            padding[i, :size] = False
        first += counts[i]
    return PositiveQueries(anchors, owners, padding)
