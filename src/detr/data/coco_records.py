"""A COCO annotations file read and validated once: everything that uses a split's json
(data fitting, datasets, training, evaluation) reads these records, never the raw file.

Every problem is one DatasetError line naming the file, the record (its id, or its
place in the list when it has none) and what is wrong, with the fix where it is plain.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

log = logging.getLogger(__name__)

_LISTS = ("images", "annotations", "categories")


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


@dataclass(frozen=True)
class CocoRecords:
    """A validated annotations file: image records by id (in id order) and each image's
    annotations, their boxes clamped to the image (boxes with no area dropped; both counted
    in `problems`)."""

    path: Path
    categories: Categories
    images: dict[int, dict]
    annotations: dict[int, list[dict]]
    problems: dict[str, int]


def object_annotations(annotations: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The annotations that are detection targets: COCO's crowd regions (iscrowd=1) are not
    (they are kept in the files for evaluation, which ignores detections on them)."""
    return [a for a in annotations if not a.get("iscrowd", 0)]


def read_coco(path: str | Path, categories: Categories | None = None,
              categories_owner: str = "the model's") -> CocoRecords:
    """The file's records, checked. With `categories` (`categories_owner`'s: the model's, or
    the training split's), the file's categories must be among them and labels follow them."""
    path = Path(path)
    data = _read_json(path)
    found = _categories(data["categories"], data["annotations"], path)
    if categories is not None and set(found.ids) - set(categories.ids):
        raise DatasetError(f"{path}: categories {sorted(set(found.ids) - set(categories.ids))} are not among "
                           f"{categories_owner} ({list(categories.ids)}); the model can only detect those")
    images = _images(data["images"], path)
    problems: Counter[str] = Counter()
    annotations: dict[int, list[dict]] = {i: [] for i in images}
    seen: dict[Any, int] = {}
    for index, ann in enumerate(data["annotations"]):
        name = _name(ann, index, "annotation", path)
        _require(ann, ("image_id", "category_id", "bbox"), name, path)
        if "id" in ann:
            if not _is_integer(ann["id"]):
                raise DatasetError(f"{path}: annotation number {index + 1} has id {ann['id']!r}; annotation ids "
                                   "are integers")
            if ann["id"] in seen:
                raise DatasetError(f"{path}: annotation id {ann['id']} is used twice; annotation ids must be unique")
            seen[ann["id"]] = index
        if not _is_integer(ann["image_id"]) or ann["image_id"] not in images:
            raise DatasetError(f"{path}: {name} points at unknown image {ann['image_id']!r}; no image record "
                               "has that id")
        if not _is_integer(ann["category_id"]) or ann["category_id"] not in found.ids:
            raise DatasetError(f"{path}: {name} has unknown category {ann['category_id']!r}; the file's categories "
                               f"are {list(found.ids)}: correct the annotation or add its category")
        cleaned = _clean_box(ann, name, images[ann["image_id"]], problems, path)
        if cleaned is not None:
            annotations[ann["image_id"]].append(cleaned)
    if problems:
        log.warning("%s: %s", path, ", ".join(f"{n} {what}" for what, n in sorted(problems.items())))
    return CocoRecords(path, categories or found, images, annotations, dict(problems))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read annotation file {path}: {error.strerror}") from None
    if not raw.strip():
        raise DatasetError(f"{path}: annotation file is empty; export or download the annotations again")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: annotation file is not UTF-8 text; save it as UTF-8 JSON") from None
    except json.JSONDecodeError as error:
        # A file cut short (an interrupted download or copy) fails at its very end, or in a string left open.
        cut = error.pos >= len(raw.decode(errors="replace").rstrip()) or error.msg.startswith("Unterminated string")
        raise DatasetError(f"{path}: annotation file is not valid JSON ({error})"
                           + ("; it looks cut short: download or copy it again" if cut else "")) from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: annotation file must hold a JSON object with 'images', 'annotations' and "
                           f"'categories', not a {_json_type(data)}")
    for key in _LISTS:
        if not isinstance(data.get(key), list):
            found = "none" if key not in data else f"a {_json_type(data[key])}"
            raise DatasetError(f"{path}: annotation file has no '{key}' list ({found}); a COCO file lists "
                               f"{', '.join(repr(k) for k in _LISTS)}")
    return data


def _categories(records: list, annotations: list, path: Path) -> Categories:
    ids: dict[int, str] = {}
    for index, category in enumerate(records):
        name = _name(category, index, "category", path)
        _require(category, ("id", "name"), name, path)
        if not _is_integer(category["id"]):
            raise DatasetError(f"{path}: category number {index + 1} has id {category['id']!r}; category ids are "
                               "integers")
        if category["id"] in ids:
            raise DatasetError(f"{path}: category id {category['id']} is used twice ({ids[category['id']]!r} and "
                               f"{category['name']!r}); category ids must be unique")
        ids[category["id"]] = category["name"]
    kept = sorted(_without_roboflow_parent(records, annotations, path), key=lambda c: c["id"])
    if not kept:
        raise DatasetError(f"{path}: no categories; the file must list its classes under 'categories'")
    return Categories(tuple(c["id"] for c in kept), tuple(str(c["name"]) for c in kept))


def _without_roboflow_parent(categories: list[dict], annotations: list, path: Path) -> list[dict]:
    """The categories less Roboflow's parent: its COCO exports list the project's name (e.g.
    "objects") as a category that no annotation uses and that is every real class's
    supercategory. Kept, it would be a class the model is taught never to predict."""
    used = {a.get("category_id") for a in annotations if isinstance(a, dict) and _is_integer(a.get("category_id"))}
    for parent in categories:
        others = [c for c in categories if c is not parent]
        if (parent["id"] not in used and others and parent.get("supercategory") != parent["name"]
                and all(c.get("supercategory") == parent["name"] for c in others)):
            log.info("%s: left out category %s (%r): no annotation uses it and it is the supercategory "
                     "of the others (Roboflow's parent category)", path, parent["id"], parent["name"])
            return others
    return categories


def _images(records: list, path: Path) -> dict[int, dict]:
    images: dict[int, dict] = {}
    for index, image in enumerate(records):
        name = _name(image, index, "image", path)
        _require(image, ("id", "file_name", "width", "height"), name, path)
        if not _is_integer(image["id"]):
            raise DatasetError(f"{path}: image number {index + 1} ({image['file_name']!r}) has id {image['id']!r}; "
                               "image ids are integers")
        if not isinstance(image["file_name"], str) or not image["file_name"]:
            raise DatasetError(f"{path}: {name} has file_name {image['file_name']!r}; it must name the image file")
        if not all(_is_number(image[k]) and image[k] > 0 for k in ("width", "height")):
            raise DatasetError(f"{path}: image {image['id']} ({image['file_name']}) has width "
                               f"{image['width']!r} and height {image['height']!r}; both must be positive numbers "
                               "(the image's size in pixels)")
        if image["id"] in images:
            raise DatasetError(f"{path}: image id {image['id']} is used twice ({images[image['id']]['file_name']} "
                               f"and {image['file_name']}); image ids must be unique")
        images[image["id"]] = image
    return dict(sorted(images.items()))


def _clean_box(ann: dict, name: str, image: dict, problems: Counter, path: Path) -> dict | None:
    """Malformed boxes are errors; empty ones are dropped and boxes reaching out clamped (counted)."""
    box = ann["bbox"]
    where = f"{path}: {name} (image {ann['image_id']}) has"
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise DatasetError(f"{where} bbox {box!r}; a COCO bbox is 4 finite numbers [x, y, width, height]")
    x, y, w, h = (float(v) for v in box)
    if w < 0 or h < 0:
        raise DatasetError(f"{where} negative width or height in bbox {box!r}; a COCO bbox is "
                           "[x, y, width, height], not two corners")
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


def _name(record: Any, index: int, kind: str, path: Path) -> str:
    """How messages name a record: by its id, or by its place in its list when it has none."""
    if not isinstance(record, dict):
        raise DatasetError(f"{path}: {kind} number {index + 1} in the list is {_json_type(record)} {record!r:.60}, "
                           "not an object")
    return f"{kind} {record['id']!r}" if "id" in record else f"{kind} number {index + 1} (no id)"


def _require(record: dict, keys: tuple[str, ...], name: str, path: Path) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise DatasetError(f"{path}: {name} lacks {missing}; each {name.split()[0]} needs "
                           f"{', '.join(repr(k) for k in keys)}")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite JSON number (bools, strings and NaN are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
