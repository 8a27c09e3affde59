"""Hand-made COCO splits for layout, data and command tests: the one helper that writes them."""

import json
from pathlib import Path

from PIL import Image


def write_coco(path: Path, images: list[dict], annotations: list[dict], categories: list[dict],
               image_folder: Path | None = None, colour: tuple[int, int, int] = (10, 20, 30)) -> Path:
    """A COCO json at `path` holding these records; with `image_folder`, a plain `colour` PNG
    there for each image record (its file_name, width and height)."""
    if image_folder is not None:
        image_folder.mkdir(parents=True, exist_ok=True)
        for image in images:
            Image.new("RGB", (image["width"], image["height"]), colour).save(image_folder / image["file_name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def write_tiny_coco(images: Path, annotations: Path, count: int = 2) -> None:
    """`count` 32x32 PNGs in `images` and a COCO json naming them at `annotations`."""
    images.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (32, 32), (40 * i, 90, 0)).save(images / f"{i}.png")
    write_coco(annotations,
               [{"id": i + 1, "file_name": f"{i}.png", "width": 32, "height": 32} for i in range(count)],
               [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 10, 12]} for i in range(count)],
               [{"id": 1, "name": "dot"}])
