"""Hungarian matching between predicted and ground-truth boxes."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou

from detr.config import LossConfig
from detr.model.class_scoring import ClassScoring
from detr.model.outputs import Predictions, TokenProposals

Match = tuple[torch.Tensor, torch.Tensor]  # (query indices, target indices), int64 on CPU


class HungarianMatcher:
    """One-to-one assignment minimising w_class·(−p[class]) + w_bbox·L1 + w_giou·(−GIoU).

    The cost of every (query, target) pair of the batch, for every decoder
    layer, is computed in one batched pass in fp32, moved to the host once,
    and solved per image and layer with scipy's linear_sum_assignment.
    """

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 scoring: ClassScoring = ClassScoring()) -> None:
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("all matcher costs are zero")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.scoring = scoring  # p[class] of the class cost

    @classmethod
    def from_config(cls, config: LossConfig, scoring: ClassScoring = ClassScoring()) -> HungarianMatcher:
        return cls(config.cost_class, config.cost_bbox, config.cost_giou, scoring)

    @torch.no_grad()
    def layer_cost_matrices(self, layers: list[Predictions], targets: list[dict]) -> list[list[torch.Tensor]]:
        """Per decoder layer, per image, the [num_queries, num_targets] cost matrix (on the host).

        All layers' costs come from one batched fp32 pass and reach the host in
        one transfer: one synchronisation per training step, not one per layer.
        """
        logits = torch.stack([layer.logits for layer in layers])  # [L, B, Q, C]
        boxes = torch.stack([layer.boxes for layer in layers])
        num_layers, batch, num_queries = logits.shape[:3]
        sizes = [len(t["labels"]) for t in targets]
        if len(sizes) != batch:
            raise ValueError(f"{len(sizes)} targets for a batch of {batch} images")
        if max(sizes, default=0) > num_queries:
            raise ValueError(
                f"an image has {max(sizes)} target boxes but the model has only {num_queries} queries; "
                "raise model.num_queries"
            )
        if sum(sizes) == 0:
            return [[torch.zeros(num_queries, 0) for _ in sizes] for _ in range(num_layers)]
        pred_boxes = boxes.flatten(1, 2).float()
        target_labels = torch.cat([t["labels"] for t in targets])
        target_boxes = torch.cat([t["boxes"] for t in targets]).float()

        cost = self.cost_class * self._class_cost(logits.flatten(1, 2).float(), target_labels)
        cost = cost + self.cost_bbox * torch.cdist(pred_boxes, target_boxes.expand(num_layers, -1, -1), p=1)
        giou = generalized_box_iou(
            box_convert(pred_boxes.flatten(0, 1), "cxcywh", "xyxy"), box_convert(target_boxes, "cxcywh", "xyxy")
        )
        cost = cost - self.cost_giou * giou.view(num_layers, batch * num_queries, -1)
        if isinstance(layers[0], TokenProposals):  # padding is never matched, however it scores
            valid = torch.stack([layer.valid for layer in layers]).flatten(1, 2)
            cost = cost.masked_fill(~valid[..., None], 1e8)
        # A NaN would make the solver raise; the loss will show the NaN instead.
        cost = torch.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)
        cost = cost.view(num_layers, batch, num_queries, -1).cpu()
        return [[c[i] for i, c in enumerate(layer.split(sizes, dim=-1))] for layer in cost]

    def _class_cost(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[L, B*Q, K+1] logits, [T] labels -> [L, B*Q, T] unweighted class costs."""
        return -self.scoring.probabilities(logits)[..., labels]

    def cost_matrices(self, outputs: Predictions, targets: list[dict]) -> list[torch.Tensor]:
        """Per image, the [num_queries, num_targets] cost matrix of one layer's outputs."""
        return self.layer_cost_matrices([outputs], targets)[0]

    def match_layers(self, layers: list[Predictions], targets: list[dict]) -> list[list[Match]]:
        """Per layer, per image, the optimal (query indices, target indices)."""
        return [[_solve(cost) for cost in costs] for costs in self.layer_cost_matrices(layers, targets)]

    def __call__(self, outputs: Predictions, targets: list[dict]) -> list[Match]:
        return self.match_layers([outputs], targets)[0]


def _solve(cost: torch.Tensor) -> Match:
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)
