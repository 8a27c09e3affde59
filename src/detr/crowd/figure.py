"""The picture that motivates DETR: the same crowded images, the NMS detector's boxes beside
DETR's, with the objects each one missed marked."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from detr.crowd.recall import largest_same_class_iou, matched_annotations
from detr.data.coco import CocoDetection, object_annotations
from detr.viz.figure import draw_box, new_figure, save, show_image

FOUND = "#00e5ff"  # one colour for every detection: the shapes tell the classes apart
MISSED = "#ff1f1f"


def most_crowded_images(ground_truth: dict[str, Any], count: int, min_iou: float = 0.5) -> list[int]:
    """Ids of the images with the most objects overlapping another of their class at IoU >= `min_iou`
    (ties: the lower id), chosen from the ground truth alone, before looking at any detections."""
    crowding: dict[int, int] = defaultdict(int)
    for image_id, iou in largest_same_class_iou(ground_truth).values():
        crowding[image_id] += iou >= min_iou
    return sorted(crowding, key=lambda i: (-crowding[i], i))[:count]


def side_by_side(dataset: CocoDetection, detectors: list[tuple[str, list[dict], float]], out: str | Path,
                 images: int = 3) -> Path:
    """One row per crowded val image, one column per detector (name, COCO results, score
    threshold): its detections above the threshold, and dashed red boxes on the objects it
    did not find at IoU 0.5 (one-to-one, as COCO matches)."""
    ground_truth = dataset.ground_truth()
    chosen = most_crowded_images(ground_truth, images)
    figure, axes = new_figure(len(chosen), len(detectors), panel=3.2)
    index_of = {image_id: i for i, image_id in enumerate(dataset.image_ids)}
    annotations = defaultdict(list)
    for ann in ground_truth["annotations"]:
        annotations[ann["image_id"]].append(ann)
    for column, (name, results, threshold) in enumerate(detectors):
        found = matched_annotations(ground_truth, results, 0.5, min_score=threshold)
        for row, image_id in enumerate(chosen):
            image, _ = dataset.raw_item(index_of[image_id])
            ax = axes[row, column]
            show_image(ax, np.asarray(image.permute(1, 2, 0)))
            shown = [r for r in results if r["image_id"] == image_id and r["score"] >= threshold]
            for record in shown:
                x, y, w, h = record["bbox"]
                draw_box(ax, (x, y, x + w, y + h), FOUND, width=1.5)
            objects = object_annotations(annotations[image_id])
            missed = [a for a in objects if a["id"] not in found]
            for ann in missed:
                x, y, w, h = ann["bbox"]
                draw_box(ax, (x, y, x + w, y + h), MISSED, style="--", width=2)
            total = len(objects)
            ax.set_title(f"{name}: {total - len(missed)}/{total} found", fontsize=8)
    figure.suptitle("cyan: detections above each detector's best-F1 score; dashed red: objects it missed "
                    "(IoU 0.5)", fontsize=9)
    return save(figure, out)
