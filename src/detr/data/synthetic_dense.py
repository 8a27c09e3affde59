"""A crowded synthetic dataset: 15-40 small objects an image, in rows and clusters of
the same class overlapping at IoU 0.1-0.85.

This is where one-to-one matching is hardest (many near-identical neighbours,
each to be found once) and where NMS-based detectors lose true boxes, so a
recipe that converges on sparse scenes is checked on dense ones too. Fills are
translucent and outlines opaque, so every object stays visible under its
neighbours; boxes are amodal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from detr.config import DenseSynthConfig
from detr.data import synthetic_writer
from detr.data.synthetic_drawing import Box, background, composite_shape, random_colour
from detr.data.synthetic_writer import RenderedImage, coco_annotation, image_rng

CLASSES = ("circle", "square")
FORMAT_VERSION = 1  # bump when the drawing changes, so cached copies are rebuilt
MIN_SHIFT = 2.0  # px between neighbours: closer, small shapes would render as one


def _shift(length: float, iou: float) -> float:
    """The offset along one axis at which two equal boxes overlap at `iou`:
    IoU = (length - shift) / (length + shift)."""
    return max(length * (1 - iou) / (1 + iou), MIN_SHIFT)


def _group(rng: np.random.Generator, config: DenseSynthConfig, width: int,
           height: int) -> list[tuple[int, Box]]:
    """A horizontal row, a vertical row or a small grid of equal same-class boxes."""
    layout = rng.random()
    if layout < 0.5:
        rows, cols = 1, int(rng.integers(2, 7))
    elif layout < 0.75:
        rows, cols = int(rng.integers(2, 7)), 1
    else:
        rows, cols = (int(v) for v in rng.integers(2, 4, size=2))
    label = int(rng.integers(len(CLASSES)))
    w = float(rng.uniform(config.min_size, config.max_size))
    h = float(np.clip(w * rng.uniform(0.8, 1.25), config.min_size, config.max_size))
    step_x = _shift(w, float(rng.uniform(config.min_iou, config.max_iou)))
    step_y = _shift(h, float(rng.uniform(config.min_iou, config.max_iou)))
    x0 = float(rng.uniform(0, max(width - w - step_x * (cols - 1), 0)))
    y0 = float(rng.uniform(0, max(height - h - step_y * (rows - 1), 0)))
    return [(label, (x0 + c * step_x, y0 + r * step_y, w, h)) for r in range(rows) for c in range(cols)
            if x0 + c * step_x + w <= width and y0 + r * step_y + h <= height]


def objects(rng: np.random.Generator, config: DenseSynthConfig, width: int,
            height: int) -> list[tuple[int, Box]]:
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    placed: list[tuple[int, Box]] = []
    while len(placed) < count:
        placed += _group(rng, config, width, height)
    return placed[:count]


def render(config: DenseSynthConfig, split: str, index: int) -> RenderedImage:
    """Image `index` of `split` and its annotations."""
    rng = image_rng(config.seed, split, index)
    width, height = (int(v) for v in rng.integers(config.min_side, config.max_side + 1, size=2))
    canvas = Image.fromarray(background(rng, width, height).astype(np.uint8)).convert("RGBA")
    annotations = []
    for label, box in objects(rng, config, width, height):
        colour = random_colour(rng)
        outline = tuple(int(255 - c) for c in colour) + (255,)
        canvas = composite_shape(canvas, CLASSES[label], box, colour + (int(rng.integers(120, 171)),),
                                 outline, width=1)
        annotations.append(coco_annotation(label, box))
    return RenderedImage(canvas.convert("RGB"), annotations)


def write_dataset(out: str | Path, config: DenseSynthConfig = DenseSynthConfig()) -> Path:
    """Write train and val splits under `out` (skipped if already complete and current)."""
    return synthetic_writer.write_dataset(
        out, {"kind": "dense", "version": FORMAT_VERSION, "config": config.__dict__},
        lambda split, index: render(config, split, index),
        {"train": config.train_images, "val": config.val_images}, CLASSES)
