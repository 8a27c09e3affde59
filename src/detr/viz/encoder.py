"""Figure 4: encoder self-attention seen from chosen pixels.

The encoder token under a pixel attends over all tokens; on a trained model
the map of a pixel on an object already covers that object's instance,
which is what lets the decoder separate instances without NMS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from detr.viz.attention import display_size
from detr.viz.capture import Capture, check_layer
from detr.viz.figure import colour, new_figure, save, show_heatmap, show_image


@dataclass(frozen=True)
class Point:
    """A pixel (x, y) of the original image, and why it was chosen."""

    x: float
    y: float
    kind: str = "chosen"


def _distance_to_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[P] distance from each (x, y) to the nearest xyxy box (0 inside one); inf with no boxes."""
    if len(boxes) == 0:
        return np.full(len(points), np.inf)
    x, y = points[:, None, 0], points[:, None, 1]
    dx = np.maximum(np.maximum(boxes[None, :, 0] - x, x - boxes[None, :, 2]), 0)
    dy = np.maximum(np.maximum(boxes[None, :, 1] - y, y - boxes[None, :, 3]), 0)
    return np.hypot(dx, dy).min(1)


def default_points(cap: Capture) -> list[Point]:
    """Background far from objects, background next to one, and the centres of two objects.

    Objects are the two best detections; where fewer pass the threshold, the
    best-scoring queries stand in. Candidates are token centres, so each
    point sits in the middle of a token's cell.
    """
    objects = cap.top(2) if len(cap.detected) < 2 else cap.detected[:2]
    boxes = cap.boxes_xyxy[objects]
    candidates = cap.token_centres()
    distance = _distance_to_boxes(candidates, boxes)
    outside = distance > 0
    pool, pool_distance = (candidates[outside], distance[outside]) if outside.any() else (candidates, distance)
    finite = np.where(np.isfinite(pool_distance), pool_distance, 0.0)
    far, near = pool[np.argmax(finite)], pool[np.argmin(finite)]
    points = [Point(float(far[0]), float(far[1]), "background, far"),
              Point(float(near[0]), float(near[1]), "background, near object")]
    for query in objects:
        x1, y1, x2, y2 = cap.boxes_xyxy[query]
        points.append(Point(float(x1 + x2) / 2, float(y1 + y2) / 2, f"on {cap.caption(query)}"))
    return points


def encoder_attention(cap: Capture, points: Sequence[Point], layer: int = -1, per_head: bool = False,
                      size: tuple[int, int] | None = None) -> np.ndarray:
    """Self-attention of the token under each point: [P, H, W], or [P, heads, H, W] per head."""
    height, width = cap.size
    outside = [p for p in points if not (0 <= p.x < width and 0 <= p.y < height)]
    if outside:
        raise ValueError(f"point ({outside[0].x:g}, {outside[0].y:g}) is outside the {width}x{height} image; "
                         "give x,y in pixels of the original image")
    layers = cap.attention.encoder
    tokens = [cap.token_at(p.x, p.y) for p in points]
    weights = layers[check_layer(layer, len(layers), "encoder")][:, tokens]  # [heads, P, L]
    weights = weights.transpose(0, 1) if per_head else weights.mean(0)
    return cap.to_image(weights, size)


def _mark(ax, point: Point, index: int) -> None:
    ax.plot(point.x, point.y, "o", markersize=7, markerfacecolor=colour(index), markeredgecolor="white")


def plot_encoder_attention(cap: Capture, points: Sequence[Point], path: str | Path, layer: int = -1,
                           per_head: bool = False) -> Path:
    """Head-averaged: one row, the image with all points then one map per point.
    Per head: one row per point, the image with that point then one map per head."""
    points = list(points)
    maps = encoder_attention(cap, points, layer, per_head, display_size(cap))
    number = check_layer(layer, len(cap.attention.encoder), "encoder")
    if per_head:
        figure, axes = new_figure(len(points), 1 + maps.shape[1])
        for row, point in enumerate(points):
            show_image(axes[row, 0], cap.image)
            _mark(axes[row, 0], point, row)
            axes[row, 0].set_title(point.kind, fontsize=7)
            for head in range(maps.shape[1]):
                show_heatmap(axes[row, 1 + head], cap.image, maps[row, head])
                _mark(axes[row, 1 + head], point, row)
                axes[row, 1 + head].set_title(f"head {head}", fontsize=8)
    else:
        figure, axes = new_figure(1, 1 + len(points))
        show_image(axes[0, 0], cap.image)
        for index, point in enumerate(points):
            _mark(axes[0, 0], point, index)
            ax = axes[0, 1 + index]
            show_heatmap(ax, cap.image, maps[index])
            _mark(ax, point, index)
            ax.set_title(f"({point.x:.0f}, {point.y:.0f}) {point.kind}", fontsize=7)
        axes[0, 0].set_title("points", fontsize=8)
    figure.suptitle(f"encoder layer {number} self-attention from each point", fontsize=10)
    return save(figure, path)
