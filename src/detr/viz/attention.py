"""Figures 2 and 3: where each object query looks, from the decoder's cross-attention.

For a query, the cross-attention row of a decoder layer is a softmax over the
h*w encoder tokens; drawn over the image it shows the parts of the object
(often its extremities) that the query reads to place its box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from detr.viz.capture import Capture, check_layer
from detr.viz.figure import colour, draw_box, hide_unused, new_figure, save, show_heatmap, show_image


def decoder_attention(cap: Capture, queries: Sequence[int], layer: int = -1, per_head: bool = False,
                      size: tuple[int, int] | None = None) -> np.ndarray:
    """Cross-attention of `queries` over the image: [Q, H, W], or [Q, heads, H, W] per head.

    Head-averaged maps still sum to 1 over tokens (before resizing to pixels).
    """
    layers = cap.attention.decoder_cross
    weights = layers[check_layer(layer, len(layers), "decoder")][:, list(queries)]  # [heads, Q, L]
    weights = weights.transpose(0, 1) if per_head else weights.mean(0)
    return cap.to_image(weights, size)


def display_size(cap: Capture, longest: int = 320) -> tuple[int, int]:
    """A heatmap resolution for drawing: the image's aspect, at most `longest` pixels a side."""
    height, width = cap.size
    scale = min(1.0, longest / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def plot_decoder_attention(cap: Capture, queries: Sequence[int], path: str | Path, layer: int = -1,
                           per_head: bool = False, title: str = "") -> Path:
    """One row per query: the image with the query's box, then its attention (mean or per head)."""
    queries = list(queries)
    maps = decoder_attention(cap, queries, layer, per_head, display_size(cap))
    heads = maps.shape[1] if per_head else 1
    figure, axes = new_figure(max(1, len(queries)), 1 + heads)
    number = check_layer(layer, len(cap.attention.decoder_cross), "decoder")
    for row, query in enumerate(queries):
        show_image(axes[row, 0], cap.image)
        draw_box(axes[row, 0], cap.boxes_xyxy[query], colour(int(cap.labels[query])), cap.caption(query))
        for head in range(heads):
            ax = axes[row, 1 + head]
            show_heatmap(ax, cap.image, maps[row, head] if per_head else maps[row])
            draw_box(ax, cap.boxes_xyxy[query], "white", style="--", width=1)
            ax.set_title(f"head {head}" if per_head else "mean over heads", fontsize=8)
    if not queries:
        hide_unused(axes, 0)
        figure.text(0.5, 0.5, "no queries to show", ha="center")
    figure.suptitle(f"{title} decoder layer {number} cross-attention".strip(), fontsize=10)
    return save(figure, path)
