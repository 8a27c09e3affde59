"""Figure 7: the Hungarian matching of one image's predictions to its ground truth.

This is the assignment the loss uses in training: each ground-truth object
gets exactly one query (the cheapest overall), every other query is taught
"no object". Drawn as boxes with links, and as the cost matrix with the
chosen cells marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torchvision.ops import box_convert

from detr.data.coco import Categories, CocoDetection, DatasetError
from detr.model.outputs import Predictions
from detr.loss import HungarianMatcher
from detr.viz.capture import Capture
from detr.viz.figure import colour, draw_box, new_mosaic, save, show_image


@dataclass
class GroundTruth:
    boxes: np.ndarray  # [T, 4] xyxy pixels of the original image
    labels: np.ndarray  # [T] contiguous labels of the model's categories


@dataclass
class Matching:
    cost: np.ndarray  # [N, T] matcher cost of query n for object t
    queries: np.ndarray  # [M] matched queries ...
    targets: np.ndarray  # [M] ... and the object each one took
    truth: GroundTruth

    @property
    def unmatched(self) -> np.ndarray:
        """Queries assigned to "no object"."""
        return np.setdiff1d(np.arange(len(self.cost)), self.queries)


def load_ground_truth(annotation_file: str | Path, image: str | Path, categories: Categories) -> GroundTruth:
    """The non-crowd boxes of `image` (found by file name) in a COCO json, in the model's labels."""
    image = Path(image)
    dataset = CocoDetection(image.parent, annotation_file, categories=categories)
    for index, image_id in enumerate(dataset.image_ids):
        if Path(dataset.images[image_id]["file_name"]).name == image.name:
            _, target = dataset.raw_item(index)
            return GroundTruth(target["boxes"].as_subclass(torch.Tensor).numpy(), target["labels"].numpy())
    raise DatasetError(f"{annotation_file} has no image named {image.name}")


def match_ground_truth(cap: Capture, truth: GroundTruth, matcher: HungarianMatcher | None = None) -> Matching:
    matcher = matcher or HungarianMatcher()
    height, width = cap.size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = torch.as_tensor(truth.boxes, dtype=torch.float32).reshape(-1, 4) / scale
    targets = [{"boxes": box_convert(boxes, "xyxy", "cxcywh"), "labels": torch.as_tensor(truth.labels).long()}]
    outputs = Predictions(cap.logits[None], cap.boxes[None])
    cost = matcher.cost_matrices(outputs, targets)[0]
    queries, objects = matcher(outputs, targets)[0]
    return Matching(cost.numpy(), queries.numpy(), objects.numpy(), truth)


def _centre(box: np.ndarray) -> tuple[float, float]:
    return float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2


def plot_matching(cap: Capture, matching: Matching, path: str | Path) -> Path:
    """Left: ground truth (solid), the query matched to it (dashed, same colour), a link between
    them, and queries above the threshold that went to no object (grey, dotted). Right: the cost
    matrix, objects by queries."""
    figure, axes = new_mosaic([["image", "image", "cost", "cost", "cost"]] * 2, panel=2.4)
    ax = axes["image"]
    show_image(ax, cap.image)
    truth = matching.truth
    for target, box in enumerate(truth.boxes):
        draw_box(ax, box, colour(target), f"gt{target} {cap.class_names[truth.labels[target]]}")
    for query, target in zip(matching.queries, matching.targets):
        predicted = cap.boxes_xyxy[query]
        draw_box(ax, predicted, colour(int(target)), f"q{query}", style="--", width=1.5)
        (x1, y1), (x2, y2) = _centre(predicted), _centre(truth.boxes[target])
        ax.plot([x1, x2], [y1, y2], color=colour(int(target)), linewidth=1)
    confident = [q for q in matching.unmatched if cap.scores[q] >= cap.threshold]
    for query in confident:
        draw_box(ax, cap.boxes_xyxy[query], "grey", f"q{query}: none", style=":", width=1)
    ax.set_title(f"{len(matching.queries)} matched; {len(matching.unmatched)} queries -> no object", fontsize=9)

    ax = axes["cost"]
    if matching.cost.shape[1] == 0:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no ground-truth objects: every query -> no object", ha="center",
                transform=ax.transAxes)
        return save(figure, path)
    image = ax.imshow(matching.cost.T, aspect="auto", cmap="viridis_r", interpolation="nearest")
    ax.scatter(matching.queries, matching.targets, marker="s", s=60, facecolors="none", edgecolors="red",
               linewidths=1.5, label="assignment")
    ax.set_xlabel("query", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yticks(range(len(truth.labels)),
                  [f"gt{t} {cap.class_names[label]}" for t, label in enumerate(truth.labels)], fontsize=7)
    ax.set_title("matching cost (class + L1 + GIoU; low is good), chosen cells in red", fontsize=9)
    figure.colorbar(image, ax=ax, fraction=0.03)
    return save(figure, path)
