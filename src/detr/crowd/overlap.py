"""Each object's largest IoU with another object of its class, and the overlap bins."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

# [0, 0.3), [0.3, 0.5), [0.5, 0.7), [0.7, 1]
BIN_EDGES = (0.0, 0.3, 0.5, 0.7)
BIN_NAMES = ("[0,0.3)", "[0.3,0.5)", "[0.5,0.7)", "[0.7,1]")


def max_same_class_iou(boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """boxes [N, 4] xyxy, labels [N] -> [N]: each box's largest IoU with another box of its label (0 if none)."""
    if len(boxes) < 2:
        return torch.zeros(len(boxes))
    iou = box_iou(boxes.float(), boxes.float())
    iou = iou * (labels[:, None] == labels[None, :])
    iou.fill_diagonal_(0)
    return iou.max(dim=1).values


def overlap_bin(values: torch.Tensor) -> torch.Tensor:
    """The bin index (0..3) of each overlap value."""
    return torch.bucketize(values, torch.tensor(BIN_EDGES[1:]), right=True)


def histogram(per_image: list[tuple[torch.Tensor, torch.Tensor]]) -> list[int]:
    """Objects per overlap bin over images given as (boxes xyxy, labels)."""
    counts = torch.zeros(len(BIN_NAMES), dtype=torch.int64)
    for boxes, labels in per_image:
        counts += torch.bincount(overlap_bin(max_same_class_iou(boxes, labels)), minlength=len(BIN_NAMES))
    return counts.tolist()
