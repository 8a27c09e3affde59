"""Model outputs to detections in pixels: no NMS; one box per query, or per (query, class) pair
(the model's class-scoring rule decides: model/class_scoring.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from detr.model.class_scoring import ClassScoring

if TYPE_CHECKING:
    from detr.model.outputs import Predictions


class PostProcess:
    """Scores and labels by the class-scoring rule (the paper's: softmax, no-object dropped, each
    query's best class), boxes to absolute xyxy.

    `image_sizes` [B, 2] holds each original (height, width). Optional
    `threshold` keeps detections scoring at least it; `top_k` keeps the k
    best (after the threshold). Detections come sorted by score.
    """

    def __init__(self, threshold: float | None = None, top_k: int | None = None,
                 scoring: ClassScoring = ClassScoring()) -> None:
        self.threshold = threshold
        self.top_k = top_k
        self.scoring = scoring

    @torch.no_grad()
    def __call__(self, outputs: Predictions, image_sizes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        logits, boxes = outputs.logits, outputs.boxes
        if len(image_sizes) != len(logits):
            raise ValueError(f"{len(image_sizes)} image sizes for {len(logits)} predictions")
        return self.select(*self.scoring.scored_boxes(logits, boxes, image_sizes))

    def select(self, scores: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor
               ) -> list[dict[str, torch.Tensor]]:
        """Per image, the detections passing `threshold` and `top_k`, sorted by score."""
        results = []
        for s, l, b in zip(scores, labels, boxes):
            order = s.argsort(descending=True)
            if self.threshold is not None:
                order = order[s[order] >= self.threshold]
            if self.top_k is not None:
                order = order[: self.top_k]
            results.append({"scores": s[order], "labels": l[order], "boxes": b[order]})
        return results
