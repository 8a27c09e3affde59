"""COCO-format detection datasets: validated on load, read into tv_tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import tv_tensors

# Categories, DatasetError and object_annotations are imported from here across the project.
from detr.data.coco_records import Categories, CocoRecords, DatasetError, object_annotations, read_coco

_BROKEN_IMAGE = (UnidentifiedImageError, OSError, SyntaxError, ValueError)  # PIL's ways of saying "broken"


def load_image(path: Path, upright: bool = False) -> Image.Image:
    """Open an image file as 8-bit RGB (see `as_rgb`); an unreadable file is a DatasetError naming it.
    `upright` turns it as its EXIF orientation says (phone photos), as viewers show it; datasets
    keep the stored pixels, which their boxes were drawn on and their width and height describe."""
    try:
        image = Image.open(path)
        image.load()
        if upright:
            image = ImageOps.exif_transpose(image)
    except FileNotFoundError:
        raise DatasetError(f"image not found: {path}") from None
    except _BROKEN_IMAGE as error:
        raise DatasetError(f"cannot read image {path}: {error}") from None
    return as_rgb(image)


def check_image_files(images_dir: Path, records: CocoRecords) -> None:
    """Every image the records list is a file in `images_dir` that opens as an image of the
    size they give. Only headers are read, so that a large dataset is checked in seconds; a
    file whose pixels are cut short is caught when it is read."""
    missing, broken = [], []
    for image_id, info in records.images.items():
        file = images_dir / info["file_name"]
        if not file.is_file():
            missing.append(f"{info['file_name']} (image {image_id})")
            continue
        try:
            with Image.open(file) as image:
                size = image.size
        except _BROKEN_IMAGE as error:
            reason = "not a format PIL reads" if isinstance(error, UnidentifiedImageError) else str(error)
            broken.append(f"image {image_id} ({info['file_name']}) is not a readable image: {file} ({reason})")
            continue
        if size != (info["width"], info["height"]):
            raise _size_mismatch(records.path, image_id, info, size)
    if missing:
        count = f"{len(missing)} listed images are" if len(missing) > 1 else "a listed image is"
        raise DatasetError(f"{records.path}: {count} missing from {images_dir}, e.g. {', '.join(missing[:3])}; "
                           "check the images folder or the file names")
    if broken:
        more = f"; {len(broken) - 1} more listed files are not images either" if len(broken) > 1 else ""
        fix = "replace the files or remove their records" if more else "replace the file or remove its record"
        raise DatasetError(f"{records.path}: {broken[0]}{more}; {fix}")


def _size_mismatch(path: Path, image_id: int, info: dict, size: tuple[int, int]) -> DatasetError:
    return DatasetError(f"{path}: image {image_id} ({info['file_name']}) is {size[0]}x{size[1]} but the file says "
                        f"{info['width']}x{info['height']}; correct the record's width and height")


def as_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: grayscale, palette, CMYK, alpha modes and 16/32-bit grayscale are converted
    (16-bit scaled to 8, not clipped; alpha dropped)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / high * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return image.convert("RGB") if image.mode != "RGB" else image


class CocoDetection(torch.utils.data.Dataset):
    """An images folder + a COCO annotations file.

    Items are (image, target) after `transforms`; before them, the image is a
    tv_tensors.Image (uint8) and target holds `boxes` (tv_tensors.BoundingBoxes,
    absolute xyxy), `labels` (contiguous int64), `image_id` and `orig_size`
    (h, w). Crowd boxes (iscrowd=1) are left out of the targets but kept in
    `ground_truth()` for evaluation. Boxes reaching outside the image are
    clamped and boxes with no area dropped; both are counted and logged once.
    """

    def __init__(
        self,
        images_dir: str | Path,
        annotations: str | Path | CocoRecords,
        transforms: Callable | None = None,
        categories: Categories | None = None,
    ) -> None:
        """`annotations`: the COCO json, read and checked here with its image files, or records
        a `Split` already holds (checked, with its image files, by `validated_split`)."""
        self.images_dir = Path(images_dir)
        self.transforms = transforms
        if not self.images_dir.is_dir():
            raise DatasetError(f"images folder not found: {self.images_dir}")
        if not isinstance(annotations, CocoRecords):
            annotations = read_coco(annotations, categories)
            check_image_files(self.images_dir, annotations)
        self.annotation_file = annotations.path
        self.categories = annotations.categories
        self.images = annotations.images
        self.image_ids = list(annotations.images)
        self.annotations = annotations.annotations
        self.problems = annotations.problems

    def __len__(self) -> int:
        return len(self.image_ids)

    def target_boxes(self, image_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(absolute xyxy boxes [N, 4], labels [N]) of an image's targets, from the json alone."""
        anns = object_annotations(self.annotations[image_id])
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([self.categories.label(a["category_id"]) for a in anns], dtype=torch.int64)
        return boxes, labels

    def most_objects(self) -> int:
        """Targets in the fullest image: the least number of queries that can match them all."""
        return max((len(object_annotations(anns)) for anns in self.annotations.values()), default=0)

    def raw_item(self, index: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        image_id = self.image_ids[index]
        info = self.images[image_id]
        image = load_image(self.images_dir / info["file_name"])
        if image.size != (info["width"], info["height"]):  # the file changed since it was checked
            raise _size_mismatch(self.annotation_file, image_id, info, image.size)
        boxes, labels = self.target_boxes(image_id)
        height, width = info["height"], info["width"]
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": labels,
            "image_id": image_id,
            "orig_size": torch.tensor([height, width]),
        }
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        return tv_tensors.Image(pixels), target

    def __getitem__(self, index: int):
        image, target = self.raw_item(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def ground_truth(self) -> dict[str, Any]:
        """The cleaned annotations (crowd boxes included) as a COCO dict, for COCOeval."""
        annotations = []
        for image_id in self.image_ids:
            for ann in self.annotations[image_id]:
                x, y, w, h = ann["bbox"]
                annotations.append({**ann, "id": len(annotations) + 1, "area": ann.get("area", w * h),
                                    "iscrowd": int(ann.get("iscrowd", 0))})
        return {
            "images": [self.images[i] for i in self.image_ids],
            "annotations": annotations,
            "categories": [{"id": i, "name": n} for i, n in zip(self.categories.ids, self.categories.names)],
        }
