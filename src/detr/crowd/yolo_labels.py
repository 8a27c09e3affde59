"""A COCO split in the layout Ultralytics trains on: `images/` (links to our image files)
beside `labels/` (one `class cx cy w h` line per object, normalised to the image), and a
dataset yaml naming both splits. The class index is the category's place in the training
split's category list; `yolo_peer.py` maps it back to the COCO id."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torchvision.ops import box_convert

from detr.data.coco_records import Categories, CocoRecords, object_annotations


def yolo_label_lines(annotations: list[dict], width: int, height: int, categories: Categories) -> list[str]:
    """One line per object (crowd regions are not objects), at full float precision so
    that the boxes read back are the COCO boxes."""
    objects = object_annotations(annotations)
    xywh = torch.tensor([ann["bbox"] for ann in objects], dtype=torch.float64).reshape(-1, 4)
    normalised = box_convert(xywh, "xywh", "cxcywh") / torch.tensor([width, height, width, height], dtype=torch.float64)
    return [" ".join([str(categories.label(ann["category_id"]))] + [repr(v) for v in box])
            for ann, box in zip(objects, normalised.tolist())]


def write_yolo_split(records: CocoRecords, images_dir: Path, out: Path, categories: Categories) -> Path:
    """`out/images/<file_name>` linked to the image, `out/labels/<file_name stem>.txt` (empty for an
    image without objects: Ultralytics trains on it as background). Returns `out/images`."""
    for image_id, info in records.images.items():
        image = out / "images" / info["file_name"]
        label = (out / "labels" / info["file_name"]).with_suffix(".txt")
        image.parent.mkdir(parents=True, exist_ok=True)
        label.parent.mkdir(parents=True, exist_ok=True)
        if image.is_symlink() or image.exists():
            image.unlink()
        os.symlink((images_dir / info["file_name"]).resolve(), image)
        lines = yolo_label_lines(records.annotations[image_id], info["width"], info["height"], categories)
        label.write_text("".join(line + "\n" for line in lines))
    return out / "images"


def write_yolo_dataset(train: CocoRecords, train_images: Path, val: CocoRecords, val_images: Path,
                       out: Path) -> Path:
    """Both splits under `out` and `out/dataset.yaml`; the training split's categories number the classes."""
    categories = train.categories
    train_dir = write_yolo_split(train, train_images, out / "train", categories)
    val_dir = write_yolo_split(val, val_images, out / "val", categories)
    names = "".join(f"  {i}: {json.dumps(name)}\n" for i, name in enumerate(categories.names))
    yaml = out / "dataset.yaml"
    yaml.write_text(f"path: {out.resolve()}\ntrain: {train_dir.resolve()}\nval: {val_dir.resolve()}\nnames:\n{names}")
    return yaml
