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
from detr.data.coco import object_annotations


def coco_matches(ground_truth: dict[str, Any], results: list[dict[str, Any]], match_iou: float) -> list[dict]:
    """COCOeval's per-(image, category) records at one match IoU, all areas, 100 detections
    an image: its greedy one-to-one matching, which every number here is built on."""
    if not results:
        return []
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ground_truth
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.params.iouThrs = np.array([match_iou])
        evaluator.params.areaRng = [evaluator.params.areaRng[0]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
    return [record for record in evaluator.evalImgs if record is not None]


def matched_annotations(ground_truth: dict[str, Any], results: list[dict[str, Any]], match_iou: float,
                        min_score: float = 0.0) -> set[int]:
    """Ids of the (non-crowd) annotations that COCOeval matches at `match_iou` to a detection
    scoring at least `min_score`. Its matching is greedy in score order, so dropping the
    detections below a score leaves the others' matches as they are."""
    score = {index + 1: r["score"] for index, r in enumerate(results)}  # loadRes numbers them from 1
    matched = set()
    for record in coco_matches(ground_truth, results, match_iou):
        for gt_id, match, ignored in zip(record["gtIds"], record["gtMatches"][0], record["gtIgnore"]):
            if match > 0 and not ignored and score[int(match)] >= min_score:
                matched.add(int(gt_id))
    return matched


def best_f1_score_threshold(ground_truth: dict[str, Any], results: list[dict[str, Any]],
                            match_iou: float = 0.5) -> float:
    """The detection score above which precision and recall at `match_iou` have the best F1:
    a fair threshold for drawing two detectors whose scores are calibrated differently."""
    records = coco_matches(ground_truth, results, match_iou)
    objects = sum(int(np.sum(np.logical_not(r["gtIgnore"]))) for r in records)
    scores, hits = [], []
    for record in records:
        keep = np.logical_not(record["dtIgnore"][0])
        scores += np.asarray(record["dtScores"])[keep].tolist()
        hits += (record["dtMatches"][0][keep] > 0).tolist()
    if not scores or objects == 0:
        return 1.0
    order = np.argsort(scores, kind="stable")[::-1]
    true_positives = np.cumsum(np.asarray(hits)[order])
    f1 = 2 * true_positives / (np.arange(1, len(order) + 1) + objects)
    return float(np.asarray(scores)[order][int(np.argmax(f1))])


def largest_same_class_iou(ground_truth: dict[str, Any]) -> dict[int, tuple[int, float]]:
    """Annotation id -> (image id, its largest IoU with another annotation of its class in
    the image), for the non-crowd annotations."""
    by_image = defaultdict(list)
    for ann in object_annotations(ground_truth["annotations"]):
        by_image[ann["image_id"]].append(ann)
    overlap = {}
    for image_id, anns in by_image.items():
        boxes = box_convert(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32), "xywh", "xyxy")
        labels = torch.tensor([a["category_id"] for a in anns])
        for ann, iou in zip(anns, max_same_class_iou(boxes, labels).tolist()):
            overlap[ann["id"]] = (image_id, iou)
    return overlap


def annotation_bins(ground_truth: dict[str, Any]) -> dict[int, int]:
    """Annotation id -> overlap bin, for the non-crowd annotations."""
    overlap = largest_same_class_iou(ground_truth)
    bins = overlap_bin(torch.tensor([iou for _, iou in overlap.values()])).tolist()
    return dict(zip(overlap, bins))


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
