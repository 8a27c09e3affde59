"""Hungarian matching between predicted and ground-truth boxes."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou

from detr.config import LossConfig

Match = tuple[torch.Tensor, torch.Tensor]  # (query indices, target indices), int64 on CPU


class HungarianMatcher:
    """One-to-one assignment minimising w_class·(−p[class]) + w_bbox·L1 + w_giou·(−GIoU).

    The cost of every (query, target) pair in the batch is computed in one
    batched pass in fp32, moved to the host once, and solved per image with
    scipy's linear_sum_assignment.
    """

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0) -> None:
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("all matcher costs are zero")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou

    @classmethod
    def from_config(cls, config: LossConfig) -> HungarianMatcher:
        return cls(config.cost_class, config.cost_bbox, config.cost_giou)

    @torch.no_grad()
    def cost_matrices(self, outputs: dict, targets: list[dict]) -> list[torch.Tensor]:
        """Per image, the [num_queries, num_targets] cost matrix (on the host)."""
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        batch, num_queries = logits.shape[:2]
        sizes = [len(t["labels"]) for t in targets]
        if len(sizes) != batch:
            raise ValueError(f"{len(sizes)} targets for a batch of {batch} images")
        if max(sizes, default=0) > num_queries:
            raise ValueError(
                f"an image has {max(sizes)} target boxes but the model has only {num_queries} queries; "
                "raise model.num_queries"
            )
        if sum(sizes) == 0:
            return [torch.zeros(num_queries, 0) for _ in sizes]
        prob = logits.flatten(0, 1).float().softmax(-1)
        pred_boxes = boxes.flatten(0, 1).float()
        target_labels = torch.cat([t["labels"] for t in targets])
        target_boxes = torch.cat([t["boxes"] for t in targets]).float()

        cost = -self.cost_class * prob[:, target_labels]
        cost = cost + self.cost_bbox * torch.cdist(pred_boxes, target_boxes, p=1)
        giou = generalized_box_iou(
            box_convert(pred_boxes, "cxcywh", "xyxy"), box_convert(target_boxes, "cxcywh", "xyxy")
        )
        cost = cost - self.cost_giou * giou
        # A NaN would make the solver raise; the loss will show the NaN instead.
        cost = torch.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)
        cost = cost.view(batch, num_queries, -1).cpu()
        return [c[i] for i, c in enumerate(cost.split(sizes, dim=-1))]

    def __call__(self, outputs: dict, targets: list[dict]) -> list[Match]:
        matches = []
        for cost in self.cost_matrices(outputs, targets):
            rows, cols = linear_sum_assignment(cost.numpy())
            matches.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return matches
