"""Which encoder tokens learn which object when the proposals learn densely: FCOS's centre sampling.

A token is positive for a target when its cell's centre lies inside the target's box
and within `radius` cells of the box's centre (on each axis); a token inside several
targets learns the smallest. This is how an NMS detector gets its dense supervision
from the first step: every object teaches several tokens, not one query.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_convert


def centre_assignment(cells: torch.Tensor, valid: torch.Tensor, boxes: torch.Tensor,
                      radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cells [L, 4] and boxes [T, 4] normalised cxcywh of one image; valid [L] (False on
    padding). Returns (token indices, target indices) of the positive pairs, each token
    at most once."""
    if len(boxes) == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=cells.device)
        return empty, empty
    centre = cells[:, None, :2]  # [L, 1, 2]
    reach = torch.minimum(boxes[None, :, 2:] / 2, radius * cells[:, None, 2:])  # [L, T, 2]
    inside = ((centre - boxes[None, :, :2]).abs() < reach).all(-1) & valid[:, None]  # [L, T]
    xyxy = box_convert(boxes, "cxcywh", "xyxy")
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    cost = torch.where(inside, area[None, :], torch.inf)
    smallest = cost.argmin(-1)
    tokens = inside.any(-1).nonzero(as_tuple=True)[0]
    return tokens, smallest[tokens]
