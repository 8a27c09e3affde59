"""The built-in dataset: shapes on textured backgrounds, written in COCO format.

Deterministic (image i of a split depends only on the seed, the split and i),
small enough to generate in seconds and to learn on a CPU. A share of the
images are crowded: rows and pairs of same-class shapes overlapping heavily,
drawn translucent with outlines so that every object stays visible, and
labelled with full (amodal) boxes.
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross")
FORMAT_VERSION = 2  # bump when the drawing changes, so cached copies are rebuilt


@dataclass(frozen=True)
class SynthConfig:
    image_size: int = 128
    train_images: int = 4000
    val_images: int = 300
    min_objects: int = 1
    max_objects: int = 6
    min_size: int = 14
    max_size: int = 48
    crowded_fraction: float = 0.25
    seed: int = 0


# Each class has a hue of its own (jittered per object), so that colour and
# shape both carry the class, as in many real datasets.
CLASS_HUES = (0.0, 0.33, 0.6, 0.14)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted colour gradient plus blocky texture and pixel noise."""
    base = rng.uniform(70, 190) + rng.uniform(-25, 25, size=3)
    slope = rng.uniform(-60, 60, size=(2, 3))
    ramp = np.linspace(-0.5, 0.5, size)
    image = base + ramp[:, None, None] * slope[0] + ramp[None, :, None] * slope[1]
    cells = rng.integers(4, 16)
    blocks = rng.normal(0, 12, size=(cells, cells, 3))
    image = image + np.kron(blocks, np.ones((math.ceil(size / cells),) * 2 + (1,)))[:size, :size]
    image = image + rng.normal(0, 8, size=image.shape)
    return np.clip(image, 0, 255)


def _class_colour(rng: np.random.Generator, label: int) -> tuple[int, int, int]:
    hue = (CLASS_HUES[label] + rng.uniform(-0.06, 0.06)) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
    return int(red * 255), int(green * 255), int(blue * 255)


def _shape_points(kind: str, x: float, y: float, w: float, h: float) -> list[tuple[float, float]]:
    if kind == "triangle":
        return [(x + w / 2, y), (x + w, y + h), (x, y + h)]
    if kind == "cross":
        a, b = w / 3, h / 3
        return [(x + a, y), (x + 2 * a, y), (x + 2 * a, y + b), (x + w, y + b), (x + w, y + 2 * b),
                (x + 2 * a, y + 2 * b), (x + 2 * a, y + h), (x + a, y + h), (x + a, y + 2 * b),
                (x, y + 2 * b), (x, y + b), (x + a, y + b)]
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def _draw(layer: ImageDraw.ImageDraw, kind: str, box: tuple[float, float, float, float],
          fill: tuple[int, ...], outline: tuple[int, ...]) -> None:
    x, y, w, h = box
    if kind == "circle":
        layer.ellipse([x, y, x + w - 1, y + h - 1], fill=fill, outline=outline, width=2)
    else:
        pts = _shape_points(kind, x, y, w - 1, h - 1)
        layer.polygon(pts, fill=fill, outline=outline, width=2)


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
    split_seed = {"train": 0, "val": 1}[split]
    rng = np.random.default_rng([config.seed, split_seed, index])
    canvas = Image.fromarray(_background(rng, config.image_size).astype(np.uint8)).convert("RGBA")
    crowded = rng.random() < config.crowded_fraction
    objects = _crowded_boxes(rng, config) if crowded else _scattered_boxes(rng, config)
    annotations = []
    for label, box in objects:
        colour = _class_colour(rng, label)
        alpha = 160 if crowded else 215  # translucent: no object is ever fully hidden
        outline = tuple(int(255 - c) for c in colour) + (255,)
        layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        _draw(ImageDraw.Draw(layer), CLASSES[label], box, colour + (alpha,), outline)
        canvas = Image.alpha_composite(canvas, layer)
        x, y, w, h = box
        annotations.append({"category_id": label + 1, "bbox": [round(v, 2) for v in (x, y, w, h)],
                            "area": round(w * h, 2), "iscrowd": 0})
    return canvas.convert("RGB"), annotations


def write_split(config: SynthConfig, out: Path, split: str) -> Path:
    count = config.train_images if split == "train" else config.val_images
    images_dir = out / split / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        image, anns = render(config, split, index)
        name = f"{index:06d}.png"
        image.save(images_dir / name)
        images.append({"id": index + 1, "file_name": name, "width": image.width, "height": image.height})
        for ann in anns:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": index + 1})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    annotation_file = out / split / "annotations.json"
    tmp = annotation_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    tmp.replace(annotation_file)  # the json appears last: its presence marks a complete split
    return annotation_file


def write_dataset(out: str | Path, config: SynthConfig = SynthConfig()) -> Path:
    """Write train and val splits under `out` (skipped if already complete and current)."""
    out = Path(out)
    stamp = out / "synth.json"
    wanted = {"version": FORMAT_VERSION, "config": config.__dict__}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return out
    for split in ("train", "val"):
        write_split(config, out, split)
    stamp.write_text(json.dumps(wanted))
    return out
