"""Drawing detections on images (torchvision's draw_bounding_boxes does the drawing)."""

from __future__ import annotations

import functools

import torch
from matplotlib import font_manager
import torch.nn.functional as F
from torchvision.utils import draw_bounding_boxes

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
            "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"]


def draw_detections(image: torch.Tensor, boxes: torch.Tensor, labels: list[int], captions: list[str],
                    min_side: int = 384) -> torch.Tensor:
    """uint8 [3, H, W] image + xyxy pixel boxes -> uint8 image with boxes and captions.

    Small images are upscaled first so that captions stay legible.
    """
    scale = max(1.0, min_side / min(image.shape[-2:]))
    if scale > 1:
        size = (round(image.shape[-2] * scale), round(image.shape[-1] * scale))
        image = F.interpolate(image[None].float(), size=size, mode="nearest")[0].to(torch.uint8)
        boxes = boxes * scale
    if len(boxes) == 0:
        return image
    colors = [_PALETTE[label % len(_PALETTE)] for label in labels]
    return draw_bounding_boxes(image, boxes.cpu(), labels=captions, colors=colors, width=2,
                               font=_caption_font(), font_size=14)


@functools.cache
def _caption_font() -> str:
    """A TrueType font for captions: matplotlib ships DejaVu Sans."""
    return font_manager.findfont("DejaVu Sans")
