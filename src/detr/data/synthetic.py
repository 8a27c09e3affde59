"""The built-in dataset: shapes on textured backgrounds, written in COCO format.

Deterministic (image i of a split depends only on the seed, the split and i),
small enough to generate in seconds and to learn on a CPU. A share of the
images are crowded: rows and pairs of same-class shapes overlapping heavily,
drawn translucent with outlines so that every object stays visible, and
labelled with full (amodal) boxes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from detr.config import SynthConfig
from detr.data import synthetic_writer
from detr.data.synthetic_drawing import background, composite_shape, random_colour
from detr.data.synthetic_writer import RenderedImage, coco_annotation, image_rng

CLASSES = ("circle", "square", "triangle", "cross")
FORMAT_VERSION = 2  # bump when the drawing changes, so cached copies are rebuilt


# Each class has a hue of its own (jittered per object), so that colour and
# shape both carry the class, as in many real datasets.
CLASS_HUES = (0.0, 0.33, 0.6, 0.14)


def _class_colour(rng: np.random.Generator, label: int) -> tuple[int, int, int]:
    return random_colour(rng, hue=(CLASS_HUES[label] + rng.uniform(-0.06, 0.06)) % 1.0)


def _scattered_boxes(rng, config: SynthConfig) -> list[tuple[int, tuple[float, ...]]]:
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    objects = []
    for _ in range(count):
        w = float(rng.uniform(config.min_size, config.max_size))
        h = float(np.clip(w * rng.uniform(0.7, 1.4), config.min_size, config.max_size))
        x = float(rng.uniform(0, config.image_size - w))
        y = float(rng.uniform(0, config.image_size - h))
        objects.append((int(rng.integers(len(CLASSES))), (x, y, w, h)))
    return objects


def _crowded_boxes(rng, config: SynthConfig) -> list[tuple[int, tuple[float, ...]]]:
    """A row of 2-4 same-class shapes, each shifted by a fraction of its width."""
    label = int(rng.integers(len(CLASSES)))
    count = int(rng.integers(2, 5))
    w = float(rng.uniform(config.min_size * 1.5, config.max_size))
    h = float(w * rng.uniform(0.8, 1.25))
    # Horizontal overlap o of equal boxes gives IoU = o / (2 - o): 0.1 .. 0.85.
    overlap = float(rng.uniform(0.18, 0.92))
    step = w * (1 - overlap)
    span = w + step * (count - 1)
    x0 = float(rng.uniform(0, max(config.image_size - span, 0)))
    y = float(rng.uniform(0, config.image_size - h))
    objects = [(label, (x0 + i * step, y, w, h)) for i in range(count) if x0 + i * step + w <= config.image_size]
    return objects + _scattered_boxes(rng, config)[: int(rng.integers(0, 3))]


def render(config: SynthConfig, split: str, index: int) -> tuple[Image.Image, list[dict]]:
    """Image `index` of `split` and its annotations (COCO bbox, 1-based category ids)."""
    rng = image_rng(config.seed, split, index)
    size = config.image_size
    canvas = Image.fromarray(background(rng, size, size).astype(np.uint8)).convert("RGBA")
    crowded = rng.random() < config.crowded_fraction
    objects = _crowded_boxes(rng, config) if crowded else _scattered_boxes(rng, config)
    annotations = []
    for label, box in objects:
        colour = _class_colour(rng, label)
        alpha = 160 if crowded else 215  # translucent: no object is ever fully hidden
        outline = tuple(int(255 - c) for c in colour) + (255,)
        canvas = composite_shape(canvas, CLASSES[label], box, colour + (alpha,), outline)
        annotations.append(coco_annotation(label, box))
    return canvas.convert("RGB"), annotations


def write_dataset(out: str | Path, config: SynthConfig = SynthConfig()) -> Path:
    """Write train and val splits under `out` (skipped if already complete and current)."""
    return synthetic_writer.write_dataset(
        out, {"version": FORMAT_VERSION, "config": config.__dict__},
        lambda split, index: RenderedImage(*render(config, split, index)),
        {"train": config.train_images, "val": config.val_images}, CLASSES)
