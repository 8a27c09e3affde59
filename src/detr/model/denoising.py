"""Denoising queries (DN-DETR): noised ground truth that the decoder learns to restore.

In training, each image's target boxes and labels are copied into G groups,
each with its own noise: box corners shift by up to `box_noise` of the half
size, and a share of labels flips to a random class. A group's queries start
from the noised boxes (anchors) and the noised labels' embeddings (content)
and must reconstruct the originals: no matching is needed, which steadies
the early training that bipartite matching makes slow. The groups decode in
the matching queries' pass, behind DN-DETR's attention mask (joint_queries.py):
neither the matching queries nor the other groups see them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import box_convert

from detr.model.anchor_decoder import inverse_sigmoid
from detr.model.queries import DecoderQueries


@dataclass
class DenoisingQueries:
    labels: torch.Tensor  # [B x G, Q] noised labels (padding: 0)
    anchors: torch.Tensor  # [B x G, Q, 4] noised boxes in inverse-sigmoid space
    padding: torch.Tensor  # [B x G, Q] True on queries past the image's target count
    groups: int  # query q of every group reconstructs its image's target q


def noised_queries(targets: list[dict], groups: int, num_classes: int, box_noise: float,
                   label_noise: float) -> DenoisingQueries | None:
    """targets: per image {"labels" [T_i], "boxes" [T_i, 4] normalised cxcywh}. None when the
    batch holds no target. Entry b x G + g is image b's group g. Corners shift by up to
    box_noise of the half size."""
    most = max(len(t["labels"]) for t in targets)
    if most == 0 or groups == 0:
        return None
    device = targets[0]["boxes"].device
    batch = len(targets)
    labels = torch.zeros(batch, most, dtype=torch.int64, device=device)
    boxes = torch.full((batch, most, 4), 0.5, device=device)
    padding = torch.ones(batch, most, dtype=torch.bool, device=device)
    for i, target in enumerate(targets):
        count = len(target["labels"])
        labels[i, :count], boxes[i, :count], padding[i, :count] = target["labels"], target["boxes"], False
    labels = labels.repeat_interleave(groups, 0)
    boxes = boxes.float().repeat_interleave(groups, 0)
    padding = padding.repeat_interleave(groups, 0)

    flip = torch.rand(labels.shape, device=device) < label_noise * 0.5
    labels = torch.where(flip, torch.randint_like(labels, num_classes), labels)
    half_size = boxes[..., 2:].repeat(1, 1, 2) / 2  # (w/2, h/2, w/2, h/2)
    corners = box_convert(boxes, "cxcywh", "xyxy")
    shift = torch.rand_like(corners) * 2 - 1
    corners = corners + shift * half_size * box_noise
    noised = box_convert(corners.clamp(0, 1), "xyxy", "cxcywh")
    return DenoisingQueries(labels.masked_fill(padding, 0), inverse_sigmoid(noised), padding, groups)


class DenoisingBranch(nn.Module):
    """The training-only branch: `groups` groups of noised targets, which the model's anchor
    decoder decodes with a learned embedding of each noised label as content."""

    def __init__(self, num_classes: int, dim: int, groups: int, box_noise: float, label_noise: float) -> None:
        super().__init__()
        self.num_classes, self.groups = num_classes, groups
        self.box_noise, self.label_noise = box_noise, label_noise
        self.label_embed = nn.Embedding(num_classes, dim)

    def forward(self, targets: list[dict]) -> tuple[DecoderQueries, DenoisingQueries] | None:
        """The decoder's queries (content: the noised labels' embeddings; anchors: the noised
        boxes) [B x G, T, ...] and what they were made from; None when the batch holds no target."""
        queries = noised_queries(targets, self.groups, self.num_classes, self.box_noise, self.label_noise)
        if queries is None:
            return None
        return DecoderQueries(self.label_embed(queries.labels), queries.anchors), queries
