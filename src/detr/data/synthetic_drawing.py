"""Drawing for the synthetic datasets: textured backgrounds and outlined shapes.

A shape fills its box exactly (its extreme points touch all four sides), so
the box it is drawn in is its amodal box, whatever covers it later.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "star")

Box = tuple[float, float, float, float]  # x, y, w, h


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A muted colour gradient plus blocky texture and pixel noise, [height, width, 3] float."""
    base = rng.uniform(70, 190) + rng.uniform(-25, 25, size=3)
    slope = rng.uniform(-60, 60, size=(2, 3))
    image = (base + np.linspace(-0.5, 0.5, height)[:, None, None] * slope[0]
             + np.linspace(-0.5, 0.5, width)[None, :, None] * slope[1])
    cells = rng.integers(4, 16)
    blocks = rng.normal(0, 12, size=(cells, cells, 3))
    tile = math.ceil(max(width, height) / cells)
    image = image + np.kron(blocks, np.ones((tile, tile, 1)))[:height, :width]
    image = image + rng.normal(0, 8, size=image.shape)
    return np.clip(image, 0, 255)


def random_colour(rng: np.random.Generator, hue: float | None = None) -> tuple[int, int, int]:
    """A saturated colour; its hue drawn uniformly unless given."""
    hue = rng.uniform(0.0, 1.0) if hue is None else hue
    red, green, blue = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
    return int(red * 255), int(green * 255), int(blue * 255)


def _star_unit() -> list[tuple[float, float]]:
    """A five-pointed star scaled so its extreme points span [0, 1] on both axes."""
    points = [(math.cos(math.pi * (k / 5 - 0.5)) * (1.0 if k % 2 == 0 else 0.4),
               math.sin(math.pi * (k / 5 - 0.5)) * (1.0 if k % 2 == 0 else 0.4)) for k in range(10)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [((px - min(xs)) / (max(xs) - min(xs)), (py - min(ys)) / (max(ys) - min(ys))) for px, py in points]


STAR = _star_unit()


def shape_points(kind: str, x: float, y: float, w: float, h: float) -> list[tuple[float, float]]:
    """The polygon of a non-circle shape spanning x..x+w, y..y+h."""
    if kind == "triangle":
        return [(x + w / 2, y), (x + w, y + h), (x, y + h)]
    if kind == "cross":
        a, b = w / 3, h / 3
        return [(x + a, y), (x + 2 * a, y), (x + 2 * a, y + b), (x + w, y + b), (x + w, y + 2 * b),
                (x + 2 * a, y + 2 * b), (x + 2 * a, y + h), (x + a, y + h), (x + a, y + 2 * b),
                (x, y + 2 * b), (x, y + b), (x + a, y + b)]
    if kind == "star":
        return [(x + px * w, y + py * h) for px, py in STAR]
    if kind == "square":
        return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    raise ValueError(f"unknown shape {kind!r}: expected one of {SHAPES}")


def draw_shape(layer: ImageDraw.ImageDraw, kind: str, box: Box, fill: tuple[int, ...],
               outline: tuple[int, ...] | None, width: int = 2) -> None:
    x, y, w, h = box
    if kind == "circle":
        layer.ellipse([x, y, x + w - 1, y + h - 1], fill=fill, outline=outline, width=width)
    else:
        layer.polygon(shape_points(kind, x, y, w - 1, h - 1), fill=fill, outline=outline, width=width)


def composite_shape(canvas: Image.Image, kind: str, box: Box, fill: tuple[int, int, int, int],
                    outline: tuple[int, int, int, int] | None, width: int = 2) -> Image.Image:
    """`canvas` (RGBA) with the shape laid over it; a translucent fill leaves what is below visible."""
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw_shape(ImageDraw.Draw(layer), kind, box, fill, outline, width)
    return Image.alpha_composite(canvas, layer)
