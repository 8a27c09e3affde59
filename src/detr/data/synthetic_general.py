"""A second synthetic dataset, unlike the built-in one in the ways that matter for
choosing a training recipe: colour says nothing about the class, images vary in
size and aspect, objects are often small, and some images are grey or JPEG.

Recipes are chosen on the built-in dataset and reported here too, so that a
recipe tuned to one dataset's quirks shows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_convert, box_iou

from detr.config import GeneralSynthConfig
from detr.data import synthetic_writer
from detr.data.synthetic_drawing import SHAPES, Box, background, composite_shape, random_colour
from detr.data.synthetic_writer import RenderedImage, coco_annotation, image_rng

CLASSES = SHAPES
FORMAT_VERSION = 1  # bump when the drawing changes, so cached copies are rebuilt
PLACEMENT_TRIES = 20


@dataclass(frozen=True)
class GeneralObject:
    label: int
    box: Box
    colour: tuple[int, int, int]


def _object_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Any hue: drawn without the class, so that only the shape tells the class."""
    return random_colour(rng)


def _fits(box: Box, placed: list[Box], max_iou: float) -> bool:
    if not placed:
        return True
    boxes = box_convert(torch.tensor([box, *placed], dtype=torch.float64), "xywh", "xyxy")
    return box_iou(boxes[:1], boxes[1:]).max().item() <= max_iou


def objects(rng: np.random.Generator, config: GeneralSynthConfig, width: int,
            height: int) -> list[GeneralObject]:
    """Shapes placed at random, each overlapping earlier ones at IoU <= max_iou (one that
    finds no such place in a few tries is left out)."""
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    placed: list[GeneralObject] = []
    for _ in range(count):
        # Log-uniform size: small objects are as common as in natural images.
        w = float(math.exp(rng.uniform(math.log(config.min_size), math.log(config.max_size))))
        h = float(np.clip(w * rng.uniform(0.7, 1.4), config.min_size, config.max_size))
        label = int(rng.integers(len(CLASSES)))
        colour = _object_colour(rng)
        for _ in range(PLACEMENT_TRIES):
            box = (float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h)
            if _fits(box, [o.box for o in placed], config.max_iou):
                placed.append(GeneralObject(label, box, colour))
                break
    return placed


def render(config: GeneralSynthConfig, split: str, index: int) -> RenderedImage:
    """Image `index` of `split`, its annotations and how it is to be saved."""
    rng = image_rng(config.seed, split, index)
    width, height = (int(v) for v in rng.integers(config.min_side, config.max_side + 1, size=2))
    canvas = Image.fromarray(background(rng, width, height).astype(np.uint8)).convert("RGBA")
    annotations = []
    for obj in objects(rng, config, width, height):
        alpha = int(rng.integers(190, 256))
        outline = tuple(int(255 - c) for c in obj.colour) + (255,) if rng.random() < 0.5 else None
        canvas = composite_shape(canvas, CLASSES[obj.label], obj.box, obj.colour + (alpha,), outline)
        annotations.append(coco_annotation(obj.label, obj.box))
    image = canvas.convert("RGB")
    style = rng.random()
    if style < config.grey_fraction:
        return RenderedImage(image.convert("L"), annotations)
    if style < config.grey_fraction + config.jpeg_fraction:
        quality = int(rng.integers(config.min_jpeg_quality, config.max_jpeg_quality + 1))
        return RenderedImage(image, annotations, jpeg_quality=quality)
    return RenderedImage(image, annotations)


def write_dataset(out: str | Path, config: GeneralSynthConfig = GeneralSynthConfig()) -> Path:
    """Write train and val splits under `out` (skipped if already complete and current)."""
    return synthetic_writer.write_dataset(
        out, {"kind": "general", "version": FORMAT_VERSION, "config": config.__dict__},
        lambda split, index: render(config, split, index),
        {"train": config.train_images, "val": config.val_images}, CLASSES)
