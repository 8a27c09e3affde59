"""Model outputs to detections in pixels: no NMS, one box per query."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert


def class_scores(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's score and label: softmax over the classes and no-object, no-object
    dropped, the best real class. `logits` [..., K+1] -> (scores, labels), each [...]."""
    return F.softmax(logits.float(), -1)[..., :-1].max(-1)


def scored_boxes(logits: torch.Tensor, boxes: torch.Tensor, image_sizes: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits [B, N, K+1], boxes [B, N, 4] normalised cxcywh, image_sizes [B, 2] (height, width)
    -> scores [B, N], labels [B, N], absolute xyxy boxes [B, N, 4], in query order.

    Plain tensor maths with no per-image loop, so that ONNX export can trace it."""
    scores, labels = class_scores(logits)
    height, width = image_sizes.to(boxes.device).float().unbind(1)
    scale = torch.stack([width, height, width, height], dim=1)[:, None, :]
    return scores, labels, box_convert(boxes.float(), "cxcywh", "xyxy") * scale


class PostProcess:
    """Softmax, drop no-object, score = best real class, boxes to absolute xyxy.

    `image_sizes` [B, 2] holds each original (height, width). Optional
    `threshold` keeps detections scoring at least it; `top_k` keeps the k
    best (after the threshold). Detections come sorted by score.
    """

    def __init__(self, threshold: float | None = None, top_k: int | None = None) -> None:
        self.threshold = threshold
        self.top_k = top_k

    @torch.no_grad()
    def __call__(self, outputs: dict, image_sizes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        if len(image_sizes) != len(logits):
            raise ValueError(f"{len(image_sizes)} image sizes for {len(logits)} predictions")
        return self.select(*scored_boxes(logits, boxes, image_sizes))

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
