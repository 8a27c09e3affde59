"""Figure 1: the image with its detections (box, class, score, and the query that made it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detr.viz.capture import Capture
from detr.viz.figure import colour, draw_box, new_figure, save, show_image


@dataclass
class DetectedObjects:
    """Detections at the capture's threshold, best first; `queries` says which query made each."""

    queries: np.ndarray  # [D]
    boxes: np.ndarray  # [D, 4] xyxy pixels of the original image
    scores: np.ndarray  # [D]
    labels: np.ndarray  # [D]
    names: list[str]


def detected_objects(cap: Capture) -> DetectedObjects:
    queries = cap.detected
    return DetectedObjects(queries, cap.boxes_xyxy[queries], cap.scores[queries], cap.labels[queries],
                           [cap.class_names[label] for label in cap.labels[queries]])


def plot_detections(cap: Capture, path: str | Path, panel: float = 5.0) -> Path:
    found = detected_objects(cap)
    figure, axes = new_figure(1, 1, panel)
    ax = axes[0, 0]
    show_image(ax, cap.image)
    for query, box, score, label, name in zip(found.queries, found.boxes, found.scores, found.labels,
                                              found.names):
        draw_box(ax, box, colour(int(label)), f"{name} {score:.2f} (q{query})")
    ax.set_title(f"{len(found.queries)} detections with score >= {cap.threshold:g}", fontsize=9)
    return save(figure, path)
