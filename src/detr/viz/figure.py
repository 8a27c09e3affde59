"""Matplotlib plumbing shared by the figures: Agg canvases, images, boxes, heatmaps.

Figures are built with matplotlib.figure.Figure on an Agg canvas, never
through pyplot, so nothing touches global state or needs a display. With a
fixed figsize and no tight bounding box, a PNG is exactly figsize * dpi pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

DPI = 100
PANEL_INCHES = 2.6


def new_figure(rows: int, cols: int, panel: float = PANEL_INCHES) -> tuple[Figure, np.ndarray]:
    """A figure of rows x cols square panels; axes come as a 2-D array."""
    figure = Figure(figsize=(cols * panel, rows * panel), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, axes


def new_mosaic(layout: list[list[str]], panel: float = PANEL_INCHES) -> tuple[Figure, dict]:
    """A figure laid out by matplotlib's subplot_mosaic, `panel` inches per grid cell."""
    figure = Figure(figsize=(len(layout[0]) * panel, len(layout) * panel), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplot_mosaic(layout)


def figure_pixels(rows: int, cols: int, panel: float = PANEL_INCHES) -> tuple[int, int]:
    """(width, height) in pixels of the PNG that `new_figure(rows, cols, panel)` saves."""
    return round(cols * panel * DPI), round(rows * panel * DPI)


def save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def colour(index: int) -> tuple[float, ...]:
    return colormaps["tab10"](index % 10)


def show_image(ax: Axes, image: np.ndarray, dim: bool = False) -> None:
    """An image in pixel coordinates: (0, 0) is its top-left corner, (W, H) its bottom-right."""
    height, width = image.shape[:2]
    ax.imshow(image.mean(-1) if dim else image, cmap="gray" if dim else None,
              extent=(0, width, height, 0), alpha=0.6 if dim else None)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()


def show_heatmap(ax: Axes, image: np.ndarray, heat: np.ndarray) -> None:
    """`heat` (any resolution covering the whole image) over a dimmed copy of the image."""
    height, width = image.shape[:2]
    show_image(ax, image, dim=True)
    ax.imshow(heat, cmap="inferno", alpha=0.7, extent=(0, width, height, 0), interpolation="bilinear")


def draw_box(ax: Axes, box, edge: str | tuple, caption: str | None = None, style: str = "-", width: float = 2) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=edge, linestyle=style,
                           linewidth=width))
    if caption:
        ax.text(x1, y1, caption, fontsize=7, color="white", va="bottom", clip_on=True,
                bbox={"facecolor": edge, "alpha": 0.8, "pad": 1, "linewidth": 0})


def hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.ravel()[used:]:
        ax.set_axis_off()
