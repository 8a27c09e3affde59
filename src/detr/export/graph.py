"""The inference-time DETR as one traceable module with plain tensor inputs and outputs."""

from __future__ import annotations

import torch
from torch import nn

from detr.model import DETR


class InferenceGraph(nn.Module):
    """What an exported file computes: the model in eval mode, so the first query group
    only, and the last decoder layer's outputs only (no aux_outputs).

    Inputs, in order: images [B, 3, H, W] (normalised, as Predictor prepares them);
    mask [B, H, W] (True on padding) unless `with_mask` is False, which exports the
    no-padding signature; image_sizes [B, 2] (original height, width) with `postprocess`.
    Outputs: pred_logits [B, N, K+1] and pred_boxes [B, N, 4] (normalised cxcywh),
    or with `postprocess` scores [B, M], labels [B, M] and xyxy pixel boxes [B, M, 4] (M = N, or
    the (query, class) pairs that the model's class-scoring rule keeps: model/class_scoring.py).
    """

    def __init__(self, model: DETR, with_mask: bool = True, postprocess: bool = False) -> None:
        super().__init__()
        self.model = model.eval()
        self.with_mask = with_mask
        self.postprocess = postprocess

    @property
    def input_names(self) -> list[str]:
        return ["images"] + ["mask"] * self.with_mask + ["image_sizes"] * self.postprocess

    @property
    def output_names(self) -> list[str]:
        return ["scores", "labels", "boxes"] if self.postprocess else ["pred_logits", "pred_boxes"]

    def forward(self, images: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask = rest[0] if self.with_mask else None
        outputs = self.model(images, mask)
        logits, boxes = outputs.logits, outputs.boxes
        if self.postprocess:
            return self.model.scoring.scored_boxes(logits, boxes, rest[-1])
        return logits, boxes
