"""Diagnostic: where a detector's AP goes: classes, finding objects, or duplicates.

    python benchmarks/agnostic_ap.py data/general/val/annotations.json \
        runs/R/val_detections.json runs/fcos/general_peer_detections.json

Reads COCO result files (what `detr train` and `detr eval` write, and what
`benchmarks/ablation.py --peer` writes for the FCOS peer) against the ground truth,
and prints one row per file:

- AP / AP50: as COCO scores them (class-aware);
- class-agnostic AP / AP50: every box and object one category; a box listed under
  several classes (DETR's (query, class) pairs, FCOS's per-class scores) counts once,
  at its best score. How well the detector finds and ranks objects, classes aside;
- the same after class-agnostic NMS at 0.5 (a diagnostic, not a product path): how
  much duplicate boxes of one object cost;
- class right: of the objects that some box covers at IoU 0.5, the share whose
  best-scoring covering box names their class (chance: 1 / classes).
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
from pathlib import Path

import torch
from torchvision.ops import box_convert, box_iou, nms

from detr.engine.evaluate import coco_evaluate


def _by_image(records: list[dict]) -> dict[int, list[dict]]:
    by_image = collections.defaultdict(list)
    for record in records:
        by_image[record["image_id"]].append(record)
    return by_image


def distinct_boxes(records: list[dict]) -> list[dict]:
    """One record per (image, box), at its best score, all of category 1."""
    best: dict[tuple, dict] = {}
    for record in records:
        key = (record["image_id"], tuple(record["bbox"]))
        if key not in best or record["score"] > best[key]["score"]:
            best[key] = {**record, "category_id": 1}
    return list(best.values())


def agnostic_nms(records: list[dict], iou: float) -> list[dict]:
    """Class-agnostic NMS per image over distinct boxes (`distinct_boxes` first)."""
    by_image = _by_image(records)
    kept = []
    for detections in by_image.values():
        boxes = box_convert(torch.tensor([d["bbox"] for d in detections], dtype=torch.float32), "xywh", "xyxy")
        scores = torch.tensor([d["score"] for d in detections], dtype=torch.float32)
        kept += [detections[i] for i in nms(boxes, scores, iou).tolist()]
    return kept


def class_right_of_covered(ground_truth: dict, records: list[dict]) -> tuple[float, float]:
    """(share of objects some box covers at IoU 0.5, share of those whose best-scoring
    covering box names their class)."""
    by_image = _by_image(records)
    objects = collections.defaultdict(list)
    for annotation in ground_truth["annotations"]:
        objects[annotation["image_id"]].append(annotation)
    total = covered = right = 0
    for image_id, annotations in objects.items():
        total += len(annotations)
        detections = by_image.get(image_id, [])
        if not detections:
            continue
        boxes = box_convert(torch.tensor([d["bbox"] for d in detections], dtype=torch.float32), "xywh", "xyxy")
        truth = box_convert(torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32), "xywh", "xyxy")
        scores = torch.tensor([d["score"] for d in detections], dtype=torch.float32)
        for annotation, overlaps in zip(annotations, box_iou(truth, boxes)):
            covering = overlaps >= 0.5
            if covering.any():
                covered += 1
                best = int(torch.where(covering, scores, -1.0).argmax())
                right += detections[best]["category_id"] == annotation["category_id"]
    return covered / max(total, 1), right / max(covered, 1)


def agnostic_truth(ground_truth: dict) -> dict:
    truth = copy.deepcopy(ground_truth)
    for annotation in truth["annotations"]:
        annotation["category_id"] = 1
    truth["categories"] = [{"id": 1, "name": "object"}]
    return truth


def diagnose(ground_truth: dict, records: list[dict]) -> dict[str, float]:
    aware, _, _ = coco_evaluate(ground_truth, records)
    truth = agnostic_truth(ground_truth)
    boxes = distinct_boxes(records)
    agnostic, _, _ = coco_evaluate(truth, boxes)
    deduplicated, _, _ = coco_evaluate(truth, agnostic_nms(boxes, 0.5))
    covered, right = class_right_of_covered(ground_truth, records)
    return {"AP": aware["AP"], "AP50": aware["AP50"], "agnostic AP": agnostic["AP"],
            "agnostic AP50": agnostic["AP50"], "agnostic+NMS AP": deduplicated["AP"],
            "agnostic+NMS AP50": deduplicated["AP50"], "covered@0.5": covered, "class right": right}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", help="the ground truth: a COCO annotations json")
    parser.add_argument("results", nargs="+", help="COCO result files (lists of detections)")
    args = parser.parse_args()
    ground_truth = json.loads(Path(args.annotations).read_text())
    rows = {path: diagnose(ground_truth, json.loads(Path(path).read_text())) for path in args.results}
    names = list(next(iter(rows.values())))
    print("| results | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for path, row in rows.items():
        print(f"| {path} | " + " | ".join(f"{row[name]:.3f}" for name in names) + " |")


if __name__ == "__main__":
    main()
