"""Writing a synthetic dataset in our COCO layout, shared by the generators.

Each image depends only on (seed, split, index), so any image can be redrawn
alone and a dataset is the same bytes on every run. A split's json is written
last and atomically: its presence marks the split complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

SPLIT_SEEDS = {"train": 0, "val": 1}


@dataclass
class RenderedImage:
    image: Image.Image
    annotations: list[dict]  # COCO records without "id" and "image_id"
    jpeg_quality: int | None = None  # None: saved as lossless PNG

    @property
    def suffix(self) -> str:
        return ".png" if self.jpeg_quality is None else ".jpg"

    def save(self, path: Path) -> None:
        if self.jpeg_quality is None:
            self.image.save(path)
        else:
            self.image.save(path, format="JPEG", quality=self.jpeg_quality)


Renderer = Callable[[str, int], RenderedImage]


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one image."""
    return np.random.default_rng([seed, SPLIT_SEEDS[split], index])


def coco_annotation(label: int, box: tuple[float, float, float, float]) -> dict:
    """A COCO record for contiguous `label` (category id label + 1) and an xywh box."""
    x, y, w, h = box
    return {"category_id": label + 1, "bbox": [round(v, 2) for v in (x, y, w, h)],
            "area": round(w * h, 2), "iscrowd": 0}


def write_json_atomically(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)


def write_split(render: Renderer, count: int, classes: Sequence[str], out: Path, split: str) -> Path:
    """Images out/split/images/000000.png (or .jpg) and out/split/annotations.json."""
    images_dir = out / split / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        rendered = render(split, index)
        name = f"{index:06d}{rendered.suffix}"
        rendered.save(images_dir / name)
        images.append({"id": index + 1, "file_name": name, "width": rendered.image.width,
                       "height": rendered.image.height})
        for ann in rendered.annotations:
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": index + 1})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    annotation_file = out / split / "annotations.json"
    write_json_atomically(annotation_file, {"images": images, "annotations": annotations,
                                            "categories": categories})
    return annotation_file


def write_dataset(out: str | Path, stamp: dict, render: Renderer, counts: dict[str, int],
                  classes: Sequence[str]) -> Path:
    """Write each split of `counts` under `out`, unless out/synth.json already equals `stamp`
    (the dataset is complete and was made by the same generator version and config)."""
    out = Path(out)
    stamp_file = out / "synth.json"
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return out
    for split, count in counts.items():
        write_split(render, count, classes, out, split)
    write_json_atomically(stamp_file, stamp)
    return out
