"""The NMS ceiling: the share of objects that class-wise NMS keeps when the
detections are the ground truth itself (perfect boxes, random scores).

It bounds an NMS detector whose boxes are precise. It does not bound recall
at a lax match IoU: imprecise boxes overlap each other less than the true
ones and can slip past NMS.
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms

from detr.crowd.overlap import BIN_NAMES, max_same_class_iou, overlap_bin
from detr.data.coco import object_annotations


def surviving(boxes: torch.Tensor, labels: torch.Tensor, iou_threshold: float, scores: torch.Tensor) -> torch.Tensor:
    """[N] bool: which ground-truth boxes class-wise NMS at `iou_threshold` keeps, given their scores."""
    kept = torch.zeros(len(boxes), dtype=torch.bool)
    kept[batched_nms(boxes.float(), scores, labels, iou_threshold)] = True
    return kept


def nms_ceiling(per_image: list[tuple[torch.Tensor, torch.Tensor]], iou_threshold: float, draws: int = 5,
                seed: int = 0) -> list[float]:
    """Per overlap bin, the fraction of objects that survive NMS, averaged over `draws` random scorings
    (NaN for an empty bin)."""
    generator = torch.Generator().manual_seed(seed)
    kept = torch.zeros(len(BIN_NAMES))
    total = torch.zeros(len(BIN_NAMES))
    for boxes, labels in per_image:
        if len(boxes) == 0:
            continue
        bins = overlap_bin(max_same_class_iou(boxes, labels))
        for _ in range(draws):
            alive = surviving(boxes, labels, iou_threshold, torch.rand(len(boxes), generator=generator))
            kept += torch.bincount(bins[alive], minlength=len(BIN_NAMES)).float()
            total += torch.bincount(bins, minlength=len(BIN_NAMES)).float()
    return (kept / total).tolist()  # 0/0 gives NaN for an empty bin


def ground_truth_as_detections(ground_truth: dict, seed: int = 0) -> list[dict]:
    """The (non-crowd) annotations as COCO result records with random scores: fed to NMS and
    then to the same scorer as the detectors, they give the ceiling's row of the table."""
    generator = torch.Generator().manual_seed(seed)
    annotations = object_annotations(ground_truth["annotations"])
    scores = torch.rand(len(annotations), generator=generator).tolist()
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": s}
            for a, s in zip(annotations, scores)]
