"""Model outputs to detections in pixels: no NMS; one box per query, or per (query, class) pair."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert

if TYPE_CHECKING:
    from detr.model.outputs import Predictions


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """[..., K+1] -> [..., K]: softmax over the classes and no-object, no-object dropped (the paper)."""
    return F.softmax(logits.float(), -1)[..., :-1]


def class_scores(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's score and label: its best real class in `class_probabilities`.
    `logits` [..., K+1] -> (scores, labels), each [...]."""
    return class_probabilities(logits).max(-1)


def scored_boxes(logits: torch.Tensor, boxes: torch.Tensor, image_sizes: torch.Tensor, class_pairs: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits [B, N, K+1], boxes [B, N, 4] normalised cxcywh, image_sizes [B, 2] (height, width)
    -> scores [B, M], labels [B, M], absolute xyxy boxes [B, M, 4].

    `class_pairs` 0: each query's best class, M = N in query order (the paper). Otherwise
    each image's best (query, class) pairs by probability, best first, M = max(class_pairs, N)
    (at most N x K) (Deformable DETR, DINO): a query torn between two classes offers its box
    under both, so that a wrong first guess costs a rank, not the object. Still no NMS; with
    softmax scores and a threshold of 0.5 or more the two readings keep the same detections
    (two classes of one softmax cannot both reach it, and at least N pairs stay).

    Plain tensor maths with no per-image loop, so that ONNX export can trace it."""
    if class_pairs > 0:
        probabilities = class_probabilities(logits)
        classes = probabilities.shape[-1]
        count = min(max(class_pairs, probabilities.shape[1]), probabilities[0].numel())
        scores, pairs = probabilities.flatten(1).topk(count, dim=1)
        labels = pairs % classes
        boxes = boxes.gather(1, (pairs // classes)[..., None].expand(-1, -1, 4))
    else:
        scores, labels = class_scores(logits)
    height, width = image_sizes.to(boxes.device).float().unbind(1)
    scale = torch.stack([width, height, width, height], dim=1)[:, None, :]
    return scores, labels, box_convert(boxes.float(), "cxcywh", "xyxy") * scale


class PostProcess:
    """Softmax, drop no-object, score = best real class (or, with `class_pairs`, the best (query, class) pairs: see `scored_boxes`), boxes
    to absolute xyxy.

    `image_sizes` [B, 2] holds each original (height, width). Optional
    `threshold` keeps detections scoring at least it; `top_k` keeps the k
    best (after the threshold). Detections come sorted by score.
    """

    def __init__(self, threshold: float | None = None, top_k: int | None = None, class_pairs: int = 0) -> None:
        self.threshold = threshold
        self.top_k = top_k
        self.class_pairs = class_pairs

    @torch.no_grad()
    def __call__(self, outputs: Predictions, image_sizes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        logits, boxes = outputs.logits, outputs.boxes
        if len(image_sizes) != len(logits):
            raise ValueError(f"{len(image_sizes)} image sizes for {len(logits)} predictions")
        return self.select(*scored_boxes(logits, boxes, image_sizes, self.class_pairs))

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
