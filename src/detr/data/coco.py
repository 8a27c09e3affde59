"""COCO-format detection datasets: validated on load, read into tv_tensors."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import tv_tensors

log = logging.getLogger(__name__)


def object_annotations(annotations: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The annotations that are detection targets: COCO's crowd regions (iscrowd=1) are not
    (they are kept in the files for evaluation, which ignores detections on them)."""
    return [a for a in annotations if not a.get("iscrowd", 0)]


class DatasetError(ValueError):
    """A problem with the user's data, worded to name the file and the record."""


@dataclass(frozen=True)
class Categories:
    """COCO category ids (any integers, gaps allowed) <-> contiguous labels 0..K-1."""

    ids: tuple[int, ...]
    names: tuple[str, ...]

    def label(self, category_id: int) -> int:
        return self.ids.index(category_id)

    def to_dict(self) -> dict[str, list]:
        return {"ids": list(self.ids), "names": list(self.names)}

    @classmethod
    def from_dict(cls, values: dict[str, list]) -> Categories:
        return cls(tuple(int(i) for i in values["ids"]), tuple(str(n) for n in values["names"]))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    text = path.read_text()
    if not text.strip():
        raise DatasetError(f"annotation file is empty: {path}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f"annotation file is not valid JSON: {path} ({error})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file must hold a JSON object with 'images', 'annotations', "
                           f"'categories': {path}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"annotation file has no '{key}' list: {path}")
    return data


def _require(record: dict, keys: tuple[str, ...], what: str, path: Path) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise DatasetError(f"{path}: {what} {record.get('id', '?')} lacks {missing}")


def _is_number(value: Any) -> bool:
    """A finite JSON number (bools, strings and NaN are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _without_roboflow_parent(categories: list[dict], annotations: list[dict], path: Path) -> list[dict]:
    """The categories less Roboflow's parent: its COCO exports list the project's name (e.g.
    "objects") as a category that no annotation uses and that is every real class's
    supercategory. Kept, it would be a class the model is taught never to predict."""
    used = {a.get("category_id") for a in annotations}
    for parent in categories:
        others = [c for c in categories if c is not parent]
        if (parent["id"] not in used and others and parent.get("supercategory") != parent["name"]
                and all(c.get("supercategory") == parent["name"] for c in others)):
            log.info("%s: left out category %s (%r): no annotation uses it and it is the supercategory "
                     "of the others (Roboflow's parent category)", path, parent["id"], parent["name"])
            return others
    return categories


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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:  # PIL's ways of saying "broken"
        raise DatasetError(f"cannot read image {path}: {error}") from None
    return as_rgb(image)


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
        annotation_file: str | Path,
        transforms: Callable | None = None,
        categories: Categories | None = None,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.annotation_file = Path(annotation_file)
        self.transforms = transforms
        if not self.images_dir.is_dir():
            raise DatasetError(f"images folder not found: {self.images_dir}")
        data = _read_json(self.annotation_file)
        path = self.annotation_file

        for category in data["categories"]:
            _require(category, ("id", "name"), "category", path)
        records = sorted(_without_roboflow_parent(data["categories"], data["annotations"], path),
                         key=lambda c: c["id"])
        found = Categories(tuple(int(c["id"]) for c in records), tuple(str(c["name"]) for c in records))
        if not found.ids:
            raise DatasetError(f"{path}: no categories")
        if categories is not None and set(found.ids) - set(categories.ids):
            raise DatasetError(f"{path}: categories {sorted(set(found.ids) - set(categories.ids))} are not "
                               f"among the model's ({list(categories.ids)})")
        self.categories = categories or found

        self.images: dict[int, dict] = {}
        for image in data["images"]:
            _require(image, ("id", "file_name", "width", "height"), "image", path)
            if not all(_is_number(image[k]) and image[k] > 0 for k in ("width", "height")):
                raise DatasetError(f"{path}: image {image['id']} ({image['file_name']}) has width "
                                   f"{image['width']!r} and height {image['height']!r}; both must be positive numbers")
            if int(image["id"]) in self.images:
                first = self.images[int(image["id"])]["file_name"]
                raise DatasetError(f"{path}: image id {image['id']} is used twice ({first} and "
                                   f"{image['file_name']}); image ids must be unique")
            self.images[int(image["id"])] = image
        self.image_ids = sorted(self.images)
        missing = [self.images[i]["file_name"] for i in self.image_ids
                   if not (self.images_dir / self.images[i]["file_name"]).is_file()]
        if missing:
            raise DatasetError(f"{len(missing)} images listed in {path} are missing from {self.images_dir}, "
                               f"e.g. {missing[:3]}")

        problems: Counter[str] = Counter()
        self.annotations: dict[int, list[dict]] = {i: [] for i in self.image_ids}
        seen: set = set()
        for ann in data["annotations"]:
            _require(ann, ("image_id", "category_id", "bbox"), "annotation", path)
            if "id" in ann:
                if ann["id"] in seen:
                    raise DatasetError(f"{path}: annotation id {ann['id']} is used twice; annotation ids must "
                                       "be unique")
                seen.add(ann["id"])
            if ann["image_id"] not in self.images:
                raise DatasetError(f"{path}: annotation {ann.get('id', '?')} points at unknown image "
                                   f"{ann['image_id']}")
            if ann["category_id"] not in self.categories.ids:
                raise DatasetError(f"{path}: annotation {ann.get('id', '?')} has unknown category "
                                   f"{ann['category_id']}")
            cleaned = self._clean_box(ann, self.images[ann["image_id"]], problems, path)
            if cleaned is not None:
                self.annotations[ann["image_id"]].append(cleaned)
        if problems:
            log.warning("%s: %s", path, ", ".join(f"{n} {what}" for what, n in sorted(problems.items())))
        self.problems = dict(problems)

    @staticmethod
    def _clean_box(ann: dict, image: dict, problems: Counter, path: Path) -> dict | None:
        """Malformed boxes are errors; empty ones are dropped and boxes reaching out clamped (counted)."""
        box = ann["bbox"]
        if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_number(v) for v in box):
            raise DatasetError(f"{path}: annotation {ann.get('id', '?')} (image {ann['image_id']}) has bbox "
                               f"{box!r}; a COCO bbox is 4 finite numbers [x, y, width, height]")
        x, y, w, h = (float(v) for v in box)
        if w < 0 or h < 0:
            raise DatasetError(f"{path}: annotation {ann.get('id', '?')} (image {ann['image_id']}) has negative "
                               f"width or height in bbox {box!r}; a COCO bbox is [x, y, width, height], "
                               "not two corners")
        if w == 0 or h == 0:
            problems["boxes with no area dropped"] += 1
            return None
        x1, y1 = max(x, 0.0), max(y, 0.0)
        x2, y2 = min(x + w, float(image["width"])), min(y + h, float(image["height"]))
        if x2 <= x1 or y2 <= y1:
            problems["boxes outside the image dropped"] += 1
            return None
        if (x1, y1, x2, y2) != (x, y, x + w, y + h):
            problems["boxes clamped to the image"] += 1
        return {**ann, "bbox": [x1, y1, x2 - x1, y2 - y1]}

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
        if image.size != (info["width"], info["height"]):
            raise DatasetError(f"{self.annotation_file}: image {image_id} ({info['file_name']}) is "
                               f"{image.size[0]}x{image.size[1]} but the file says {info['width']}x{info['height']}")
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
