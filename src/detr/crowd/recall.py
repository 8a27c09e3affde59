"""Recall per overlap bin, from pycocotools' own one-to-one matching, and NMS on detections."""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import batched_nms, box_convert

from detr.crowd.overlap import BIN_NAMES, max_same_class_iou, overlap_bin


def matched_annotations(ground_truth: dict[str, Any], results: list[dict[str, Any]],
                        match_iou: float) -> set[int]:
    """Ids of the (non-crowd) annotations that COCOeval matches to a detection at `match_iou`
    (its greedy one-to-one matching, 100 detections per image, all areas)."""
    if not results:
        return set()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ground_truth
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.params.iouThrs = np.array([match_iou])
        evaluator.params.areaRng = [evaluator.params.areaRng[0]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
    matched = set()
    for record in evaluator.evalImgs:
        if record is None:
            continue
        for gt_id, match, ignored in zip(record["gtIds"], record["gtMatches"][0], record["gtIgnore"]):
            if match > 0 and not ignored:
                matched.add(int(gt_id))
    return matched


def annotation_bins(ground_truth: dict[str, Any]) -> dict[int, int]:
    """Annotation id -> overlap bin, for the non-crowd annotations."""
    by_image = defaultdict(list)
    for ann in ground_truth["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image[ann["image_id"]].append(ann)
    bins = {}
    for anns in by_image.values():
        boxes = box_convert(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32), "xywh", "xyxy")
        labels = torch.tensor([a["category_id"] for a in anns])
        for ann, index in zip(anns, overlap_bin(max_same_class_iou(boxes, labels)).tolist()):
            bins[ann["id"]] = index
    return bins


def recall_by_bin(ground_truth: dict[str, Any], results: list[dict[str, Any]], match_iou: float) -> list[float]:
    """Per overlap bin, the share of annotations matched at `match_iou` (NaN for an empty bin)."""
    bins = annotation_bins(ground_truth)
    matched = matched_annotations(ground_truth, results, match_iou)
    found, total = np.zeros(len(BIN_NAMES)), np.zeros(len(BIN_NAMES))
    for ann_id, index in bins.items():
        total[index] += 1
        found[index] += ann_id in matched
    with np.errstate(invalid="ignore"):
        return (found / total).tolist()


def apply_nms(results: list[dict[str, Any]], iou_threshold: float) -> list[dict[str, Any]]:
    """Class-wise NMS per image on COCO result records (xywh boxes)."""
    by_image = defaultdict(list)
    for record in results:
        by_image[record["image_id"]].append(record)
    kept = []
    for records in by_image.values():
        boxes = box_convert(torch.tensor([r["bbox"] for r in records], dtype=torch.float32), "xywh", "xyxy")
        scores = torch.tensor([r["score"] for r in records])
        labels = torch.tensor([r["category_id"] for r in records])
        kept += [records[i] for i in batched_nms(boxes, scores, labels, iou_threshold).tolist()]
    return kept
