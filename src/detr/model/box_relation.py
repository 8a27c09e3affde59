"""Decoder self-attention that sees the boxes (Relation-DETR's position relation).

For each pair of queries (i, j), the geometry of box j seen from box i: the centre distance in
units of box i's size, log(|dx| / w_i + 1) and log(|dy| / h_i + 1), and the log size ratios
log(w_i / w_j) and log(h_i / h_j). Its sine encoding, a linear map and a ReLU give one
attention bias per head, added to the self-attention's scores. So a query can learn to
attend (and defer) to the queries whose boxes cover its own object, which is the information
a one-to-one decoder needs to leave a second box on that object unscored.
"""

from __future__ import annotations

import torch
from torch import nn

from detr.model.anchor_decoder import box_sine_encoding


def pair_geometry(boxes: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """[B, N, 4] sigmoid cxcywh -> [B, N, N, 4]: entry (i, j) is box j's geometry relative to box i."""
    centre, size = boxes[..., :2], boxes[..., 2:] + eps
    distance = (centre[:, :, None] - centre[:, None]).abs() / size[:, :, None]
    ratio = size[:, :, None] / size[:, None]
    return torch.cat([torch.log1p(distance), torch.log(ratio)], dim=-1)


class BoxRelation(nn.Module):
    """An attention bias [B, heads, N, N] from the queries' boxes [B, N, 4]; `features` sine
    channels per geometry term (Relation-DETR: 16)."""

    def __init__(self, heads: int, features: int = 16) -> None:
        super().__init__()
        self.features = features
        self.project = nn.Linear(4 * features, heads)

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # the boxes are anchors: the bias learns from them, not into them
            encoded = box_sine_encoding(pair_geometry(boxes.detach().float()), 2 * self.features)
        return torch.relu(self.project(encoded.to(self.project.weight.dtype))).permute(0, 3, 1, 2)
