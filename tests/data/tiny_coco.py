"""Hand-made COCO splits of a few 32x32 PNGs, for layout and command tests."""

import json
from pathlib import Path

from PIL import Image


def write_tiny_coco(images: Path, annotations: Path, count: int = 2) -> None:
    """`count` 32x32 PNGs in `images` and a COCO json naming them at `annotations`."""
    images.mkdir(parents=True, exist_ok=True)
    annotations.parent.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (32, 32), (40 * i, 90, 0)).save(images / f"{i}.png")
    annotations.write_text(json.dumps({
        "images": [{"id": i + 1, "file_name": f"{i}.png", "width": 32, "height": 32} for i in range(count)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 10, 12]}
                        for i in range(count)],
        "categories": [{"id": 1, "name": "dot"}]}))
