"""What a user sees at a score threshold: objects found, duplicate boxes, boxes on nothing.

COCO AP forgives a second box on an object already found when it ranks below the
first, so a detector can score well while drawing two boxes on one object. These
counts say what `detr predict --threshold T` draws. Each box above the threshold,
taken from the highest score down within its image and class, is one of:

- found: it claims an object of its class (IoU >= 0.5) that no higher-scored box
  claimed; the unclaimed object it overlaps most, as COCO's matching picks;
- duplicate: every object of its class it overlaps at IoU >= 0.5 is already claimed;
- on nothing: it overlaps no object of its class at IoU >= 0.5 (background, a wrong
  class, a loose box). Crowd regions are not objects here.

The three add up to the boxes; the duplicate rate is duplicates / boxes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torchvision.ops import box_convert, box_iou

DEFAULT_THRESHOLD = 0.5  # what `detr predict` draws unless told otherwise
MATCH_IOU = 0.5


@dataclass(frozen=True)
class BoxCounts:
    threshold: float
    objects: int  # non-crowd ground-truth objects
    boxes: int  # detections scoring at least the threshold
    found: int
    duplicates: int
    on_nothing: int

    @property
    def duplicate_rate(self) -> float:
        return self.duplicates / self.boxes if self.boxes else 0.0

    def as_metrics(self) -> dict[str, float]:
        """Flat numbers for the metrics log, named by what they count."""
        return {**{f"boxes_{k}": float(v) for k, v in asdict(self).items()},
                "boxes_duplicate_rate": self.duplicate_rate}

    def describe(self) -> str:
        share = f"{self.duplicate_rate:.0%}" if self.boxes else "-"
        return (f"at score >= {self.threshold:g}: {self.boxes} boxes; {self.found} of {self.objects} objects found "
                f"(IoU >= {MATCH_IOU:g}); {self.duplicates} duplicates ({share} of boxes) on objects already "
                f"found; {self.on_nothing} on nothing")


def _xyxy(boxes: list[list[float]]) -> torch.Tensor:
    return box_convert(torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4), "xywh", "xyxy")


def count_boxes(ground_truth: dict[str, Any], results: list[dict[str, Any]],
                threshold: float = DEFAULT_THRESHOLD) -> BoxCounts:
    """Counts over COCO ground truth and COCO result records (what `detr eval` writes)."""
    objects: dict[tuple[int, int], list[list[float]]] = defaultdict(list)
    for ann in ground_truth["annotations"]:
        if not ann.get("iscrowd", 0):
            objects[ann["image_id"], ann["category_id"]].append(ann["bbox"])
    shown: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        if record["score"] >= threshold:
            shown[record["image_id"], record["category_id"]].append(record)
    found = duplicates = on_nothing = 0
    for key, records in shown.items():
        records = sorted(records, key=lambda r: -r["score"])  # stable: ties keep the file's order
        truth = objects.get(key, [])
        if not truth:
            on_nothing += len(records)
            continue
        ious = box_iou(_xyxy([r["bbox"] for r in records]), _xyxy(truth))
        claimed = torch.zeros(len(truth), dtype=torch.bool)
        for row in ious:
            hits = row >= MATCH_IOU
            free = hits & ~claimed
            if free.any():
                claimed[torch.where(free, row, -1.0).argmax()] = True
                found += 1
            elif hits.any():
                duplicates += 1
            else:
                on_nothing += 1
    return BoxCounts(threshold, sum(len(v) for v in objects.values()),
                     found + duplicates + on_nothing, found, duplicates, on_nothing)
