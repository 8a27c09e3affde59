import logging

import numpy as np
import pytest
import torch
from PIL import Image

from detr.data.coco import CocoDetection, DatasetError, load_image
from tests.data.tiny_coco import write_coco


def _write(tmp_path, images=None, annotations=None, categories=None, files=True):
    images = images if images is not None else [{"id": 7, "file_name": "a.png", "width": 40, "height": 30}]
    categories = categories if categories is not None else [{"id": 3, "name": "cat"}, {"id": 17, "name": "dog"}]
    annotations = annotations if annotations is not None else [
        {"id": 1, "image_id": 7, "category_id": 17, "bbox": [2, 3, 10, 8]},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [20, 10, 5, 5]},
        {"id": 3, "image_id": 7, "category_id": 3, "bbox": [0, 0, 40, 30], "iscrowd": 1},
    ]
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    path = write_coco(tmp_path / "ann.json", images, annotations, categories, folder if files else None)
    return folder, path


def test_reads_targets_with_contiguous_labels_and_without_crowd(tmp_path):
    dataset = CocoDetection(*_write(tmp_path))
    image, target = dataset[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.uint8
    assert target["labels"].tolist() == [1, 0]  # category 17 -> 1, 3 -> 0
    assert target["boxes"].tolist() == [[2, 3, 12, 11], [20, 10, 25, 15]]
    assert dataset.categories.ids == (3, 17) and dataset.categories.names == ("cat", "dog")
    crowd = [a for a in dataset.ground_truth()["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1  # kept for evaluation


def test_box_problems_are_clamped_or_dropped_counted_and_logged_once(tmp_path, caplog):
    annotations = [
        {"id": 1, "image_id": 7, "category_id": 3, "bbox": [30, 20, 20, 20]},  # reaches outside: clamp
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [5, 5, 0, 4]},  # zero width: drop
        {"id": 3, "image_id": 7, "category_id": 3, "bbox": [5, 5, 3, 0]},  # zero height: drop
        {"id": 4, "image_id": 7, "category_id": 3, "bbox": [50, 50, 5, 5]},  # fully outside: drop
    ]
    with caplog.at_level(logging.WARNING):
        dataset = CocoDetection(*_write(tmp_path, annotations=annotations))
    assert dataset.problems == {"boxes clamped to the image": 1, "boxes with no area dropped": 2,
                                "boxes outside the image dropped": 1}
    assert len([r for r in caplog.records if "clamped" in r.getMessage()]) == 1
    _, target = dataset[0]
    assert target["boxes"].tolist() == [[30, 20, 40, 30]]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(annotations=[{"id": 9, "image_id": 99, "category_id": 3, "bbox": [1, 1, 2, 2]}]),
         "annotation 9 points at unknown image 99"),
        (dict(annotations=[{"id": 5, "image_id": 7, "category_id": 4, "bbox": [1, 1, 2, 2]}]),
         "annotation 5 has unknown category 4"),
        (dict(files=False), "missing from"),
        (dict(images=[{"id": 1, "file_name": "a.png", "width": 4}], files=False), "lacks \\['height'\\]"),
    ],
)
def test_bad_records_name_the_file_and_record(tmp_path, change, message):
    with pytest.raises(DatasetError, match=message):
        CocoDetection(*_write(tmp_path, **change))


@pytest.mark.parametrize("text, message", [("", "is empty"), ("{not json", "not valid JSON"),
                                           ("[]", "JSON object"), ('{"images": []}', "no 'annotations'")])
def test_bad_json_files(tmp_path, text, message):
    folder, path = _write(tmp_path)
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        CocoDetection(folder, path)


def test_missing_annotation_file(tmp_path):
    folder, _ = _write(tmp_path)
    with pytest.raises(DatasetError, match="annotation file not found"):
        CocoDetection(folder, tmp_path / "nope.json")


def test_unreadable_image_names_the_file(tmp_path):
    dataset = CocoDetection(*_write(tmp_path))
    (tmp_path / "images" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="cannot read image .*a.png"):
        dataset[0]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "LA"])
def test_image_modes_become_rgb(tmp_path, mode):
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    if mode == "I;16":
        Image.fromarray(np.full((4, 5), 65535, dtype=np.uint16)).save(path)
    else:
        Image.new(mode, (5, 4)).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (5, 4)
    if mode == "I;16":
        assert np.asarray(image).min() == 255  # full 16-bit scale maps to full 8-bit scale
