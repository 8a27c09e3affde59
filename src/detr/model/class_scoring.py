"""The class-scoring rule: how a query's logits become class scores, in one place.

The matcher's class cost, the criterion's no-object class, query selection's token scores,
post-processing, the exported graph and the pictures all read the model's `ClassScoring`, so
that a new rule (a sigmoid per class, a quality score) is one new class here, not a flag
threaded through each of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert


@dataclass(frozen=True)
class ClassScoring:
    """Softmax over the K classes and no-object (the last logit), no-object dropped: the paper.

    `pairs` says how many classes each query offers at inference. 0: its best class, one
    detection per query in query order (the paper). N > 0: each image's N best (query, class)
    pairs by probability, best first, at least one per query (Deformable DETR, DINO): a query
    torn between two classes offers its box under both, so that a wrong first guess costs a
    rank, not the object. Still no NMS; at a threshold of 0.5 or more both readings keep the
    same detections (two classes of one softmax cannot both reach it)."""

    pairs: int = 0

    def __post_init__(self) -> None:
        if self.pairs < 0:
            raise ValueError(f"class pairs: 0 (each query's best class) or more, not {self.pairs}")

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """[..., K+1] -> [..., K] in fp32, whatever the logits' precision."""
        return F.softmax(logits.float(), -1)[..., :-1]

    def best(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query's score and label, its best real class: [..., K+1] -> ([...], [...])."""
        return self.probabilities(logits).max(-1)

    def no_object(self, logits: torch.Tensor) -> int:
        """The index of the no-object logit (the target of unmatched queries)."""
        return logits.shape[-1] - 1

    def predicts_object(self, logits: torch.Tensor) -> torch.Tensor:
        """[..., K+1] -> [...] True where a real class outscores no-object."""
        return logits.argmax(-1) != self.no_object(logits)

    def scored_boxes(self, logits: torch.Tensor, boxes: torch.Tensor, image_sizes: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """logits [B, N, K+1], boxes [B, N, 4] normalised cxcywh, image_sizes [B, 2] (height, width)
        -> scores [B, M], labels [B, M], absolute xyxy boxes [B, M, 4]; M = N without pairs,
        else max(pairs, N) capped at N x K.

        Plain tensor maths with no per-image loop, so that ONNX export can trace it."""
        if self.pairs > 0:
            probabilities = self.probabilities(logits)
            classes = probabilities.shape[-1]
            count = min(max(self.pairs, probabilities.shape[1]), probabilities[0].numel())
            scores, pairs = probabilities.flatten(1).topk(count, dim=1)
            labels = pairs % classes
            boxes = boxes.gather(1, (pairs // classes)[..., None].expand(-1, -1, 4))
        else:
            scores, labels = self.best(logits)
        height, width = image_sizes.to(boxes.device).float().unbind(1)
        scale = torch.stack([width, height, width, height], dim=1)[:, None, :]
        return scores, labels, box_convert(boxes.float(), "cxcywh", "xyxy") * scale
