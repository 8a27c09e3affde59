"""Class-agnostic NMS within each image of a batch, as a keep mask, that exports as one ONNX
NonMaxSuppression over the batch dimension.

torchvision's `batched_nms` traces into a single NMS over every image's boxes at once (the
images kept apart by coordinate offsets): its cost grows with the square of the whole batch's
box count, a fifth of the exported default's time at batch 8 on a CPU. ONNX's operator
runs each batch entry alone, which is what this needs; in PyTorch nothing changes.
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms

_NO_LIMIT = 2**31 - 1  # max_output_boxes_per_class: keep every survivor


class _PerImageNMS(torch.autograd.Function):
    @staticmethod
    def forward(ctx, corners: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
        batch, length = scores.shape
        images = torch.arange(batch, device=scores.device).repeat_interleave(length)
        keep = torch.zeros(batch * length, dtype=torch.bool, device=scores.device)
        keep[batched_nms(corners.flatten(0, 1), scores.flatten(), images, iou)] = True
        return keep.view(batch, length)

    @staticmethod
    def symbolic(g, corners, scores, iou: float):
        one = g.op("Constant", value_t=torch.tensor([1], dtype=torch.int64))
        selected = g.op("NonMaxSuppression", corners, g.op("Unsqueeze", scores, one),  # scores [B, 1 class, L]
                        g.op("Constant", value_t=torch.tensor([_NO_LIMIT], dtype=torch.int64)),
                        g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)))
        # selected [K, 3]: (batch index, class index, box index) of each survivor
        image_and_box = g.op("Gather", selected, g.op("Constant", value_t=torch.tensor([0, 2], dtype=torch.int64)),
                             axis_i=1)
        nothing = g.op("ConstantOfShape", g.op("Shape", scores), value_t=torch.tensor([False]))
        survivors = g.op("Expand", g.op("Constant", value_t=torch.tensor([True])),
                         g.op("Shape", g.op("Gather", selected, g.op("Constant", value_t=torch.tensor(0)), axis_i=1)))
        return g.op("ScatterND", nothing, image_and_box, survivors)


def per_image_nms(corners: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """corners [B, L, 4] (x1, y1, x2, y2), scores [B, L] -> keep [B, L]: True where greedy NMS at
    `iou` within that image keeps the box (a box is dropped above `iou` with a better-scored one)."""
    return _PerImageNMS.apply(corners, scores, iou)
