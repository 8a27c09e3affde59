import colorsys
import json
from dataclasses import replace

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_convert, box_iou

from detr.data.coco import CocoDetection
from detr.config import GeneralSynthConfig
from detr.data.synthetic_general import CLASSES, objects, render, write_dataset
from detr.data.synthetic_writer import image_rng
from tests.data.synthetic_checks import assert_boxes_match_pixels, file_bytes


def test_written_set_loads_and_varies_in_size_mode_and_format(tmp_path):
    out = write_dataset(tmp_path, GeneralSynthConfig(train_images=30, val_images=3))
    data = json.loads((out / "train" / "annotations.json").read_text())
    train = CocoDetection(out / "train" / "images", out / "train" / "annotations.json")
    assert len(train) == 30 and train.categories.names == CLASSES and not train.problems
    image, target = train[0]
    assert image.shape[0] == 3 and len(target["boxes"]) >= 1
    sizes = {(i["width"], i["height"]) for i in data["images"]}
    assert len(sizes) >= 20 and any(w != h for w, h in sizes)
    assert all(160 <= w <= 256 and 160 <= h <= 256 for w, h in sizes)
    opened = [Image.open(out / "train" / "images" / i["file_name"]) for i in data["images"]]
    jpegs = [i for i in opened if i.format == "JPEG"]
    greys = [i for i in opened if i.format == "PNG" and i.mode == "L"]
    assert all(i.filename.endswith(".jpg") for i in jpegs)  # the json's extension says the format
    assert 3 <= len(jpegs) <= 18 and 1 <= len(greys) <= 14
    sides = [min(a["bbox"][2:]) for a in data["annotations"]]
    assert min(sides) >= 12 and max(sides) <= 64 and sum(s < 24 for s in sides) >= 5
    assert CocoDetection(out / "val" / "images", out / "val" / "annotations.json", categories=train.categories)


def test_boxes_cover_the_drawn_shapes_and_nothing_is_drawn_outside_them():
    config = GeneralSynthConfig(grey_fraction=0.0, jpeg_fraction=0.0)  # lossless colour: exact comparison
    empty = replace(config, min_objects=0, max_objects=0)  # the same background, no shapes
    for index in range(10):
        rendered = render(config, "train", index)
        assert_boxes_match_pixels(rendered.image, render(empty, "train", index).image, rendered.annotations)


def test_colour_does_not_follow_the_class():
    config = GeneralSynthConfig()
    hues: dict[int, list[float]] = {label: [] for label in range(len(CLASSES))}
    for index in range(60):
        for obj in objects(image_rng(0, "train", index), config, 200, 200):
            hues[obj.label].append(colorsys.rgb_to_hsv(*(c / 255 for c in obj.colour))[0])
    for label, values in hues.items():
        # A class-bound colour (the built-in set's) would sit in one bin.
        assert len(values) >= 15 and len(np.unique(np.floor(np.array(values) * 6))) >= 5, CLASSES[label]


def test_overlaps_are_moderate():
    config = GeneralSynthConfig()
    for index in range(40):
        boxes = torch.tensor([a["bbox"] for a in render(config, "val", index).annotations])
        iou = box_iou(*(box_convert(boxes, "xywh", "xyxy"),) * 2).fill_diagonal_(0)
        assert iou.max() <= config.max_iou + 0.01


def test_same_seed_same_bytes_and_another_seed_differs(tmp_path):
    config = GeneralSynthConfig(train_images=6, val_images=3)
    first = file_bytes(write_dataset(tmp_path / "a", config))
    assert first == file_bytes(write_dataset(tmp_path / "b", config))
    assert first != file_bytes(write_dataset(tmp_path / "c", replace(config, seed=1)))
