"""Broken datasets and odd images: one clear line naming the file and the record, or a clean load."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from detr.cli import _own_line
from detr.config import preset
from detr.data.coco import CocoDetection, DatasetError
from detr.data.collate import collate
from detr.data.sources import Split, build_datasets
from detr.data.transforms import train_transforms
from tests.data.test_coco import _write

IMAGE = {"id": 7, "file_name": "a.png", "width": 40, "height": 30}


def _ann(ann_id=1, bbox=(2, 3, 10, 8), **extra):
    return {"id": ann_id, "image_id": 7, "category_id": 3, "bbox": bbox, **extra}


@pytest.mark.parametrize("change, message", [
    (dict(images=[IMAGE, {**IMAGE, "file_name": "b.png"}], annotations=[]),
     r"image id 7 is used twice \(a.png and b.png\)"),
    (dict(annotations=[_ann(4), _ann(4, (5, 5, 3, 3))]), "annotation id 4 is used twice"),
    (dict(images=[{**IMAGE, "width": "40"}], annotations=[], files=False), r"image 7 \(a.png\) has width '40'"),
    (dict(images=[{**IMAGE, "height": 0}], annotations=[], files=False), "has width 40 and height 0"),
])
def test_duplicate_ids_and_bad_image_sizes_are_named(tmp_path, change, message):
    with pytest.raises(DatasetError, match=message) as caught:
        CocoDetection(*_write(tmp_path, **change))
    assert "ann.json" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("bbox", [
    [5, 5, -3, 4], [5, 5, 3, -4],  # negative size: corners given as width and height?
    [float("nan"), 5, 3, 4], [5, 5, float("inf"), 4], ["5", 5, 3, 4], "5534", [5, 5, 3], [5, 5, 3, 4, 1], None,
    [True, 5, 3, 4], {"x": 5},
])
def test_malformed_boxes_name_the_annotation_and_the_file(tmp_path, bbox):
    with pytest.raises(DatasetError, match=r"ann.json: annotation 12 \(image 7\) has") as caught:
        CocoDetection(*_write(tmp_path, annotations=[_ann(), _ann(12, bbox)]))
    assert "\n" not in str(caught.value)


def test_a_missing_box_names_the_annotation(tmp_path):
    annotation = {"id": 12, "image_id": 7, "category_id": 3}
    with pytest.raises(DatasetError, match=r"ann.json: annotation 12 lacks \['bbox'\]"):
        CocoDetection(*_write(tmp_path, annotations=[annotation]))


def _png(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        buffer, format="png")
    return buffer.getvalue()


@pytest.mark.parametrize("content", [b"", _png()[: len(_png()) // 2], b"<html>not found</html>"],
                         ids=["zero-byte", "truncated", "text"])
def test_unreadable_image_files_are_one_line_naming_the_file(tmp_path, content):
    dataset = CocoDetection(*_write(tmp_path))
    (tmp_path / "images" / "a.png").write_bytes(content)
    with pytest.raises(DatasetError, match=r"cannot read image .*images/a.png") as caught:
        dataset[0]
    assert "\n" not in str(caught.value)


def test_an_image_of_another_size_than_the_json_says_is_named(tmp_path):
    dataset = CocoDetection(*_write(tmp_path))
    (tmp_path / "images" / "a.png").write_bytes(_png((41, 30)))
    with pytest.raises(DatasetError, match=r"image 7 \(a.png\) is 41x30 but the file says 40x30"):
        dataset[0]


def test_an_error_raised_in_a_loader_worker_still_reads_as_one_line(tmp_path):
    dataset = CocoDetection(*_write(tmp_path))
    (tmp_path / "images" / "a.png").write_bytes(b"")
    loader = torch.utils.data.DataLoader(dataset, num_workers=1, collate_fn=collate)
    with pytest.raises(DatasetError) as caught:
        next(iter(loader))
    assert "Original Traceback" in str(caught.value)  # torch wraps it ...
    line = _own_line(caught.value)  # ... and the command prints its own line alone
    assert line.startswith("cannot read image ") and line.endswith("cannot identify image file "
                                                                   f"'{tmp_path / 'images' / 'a.png'}'")


def _mode_image(mode: str) -> Image.Image:
    pixels = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    if mode == "I;16":
        return Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    return Image.fromarray(pixels).convert(mode)


def test_images_of_every_mode_go_through_the_training_pipeline(tmp_path):
    modes = {"I;16": "png", "CMYK": "jpg", "P": "png", "LA": "png", "RGBA": "png", "L": "png"}
    images = [{"id": i, "file_name": f"{i}.{suffix}", "width": 40, "height": 30}
              for i, suffix in enumerate(modes.values(), start=1)]
    folder, path = _write(tmp_path, images=images, annotations=[
        {"id": i, "image_id": i, "category_id": 3, "bbox": [5, 5, 30, 20]} for i in range(1, len(modes) + 1)])
    for image, mode in zip(images, modes):
        _mode_image(mode).save(folder / image["file_name"])
        assert Image.open(folder / image["file_name"]).mode == mode
    data = preset("small").data
    dataset = CocoDetection(folder, path, train_transforms(data))
    batch, mask, targets = collate([dataset[i] for i in range(len(dataset))])
    assert batch.shape[:2] == (len(modes), 3) and batch.dtype == torch.float32 and torch.isfinite(batch).all()
    assert all(len(t["boxes"]) == 1 for t in targets)


def test_an_empty_train_or_val_split_is_refused(tmp_path):
    (tmp_path / "full").mkdir(), (tmp_path / "empty").mkdir()
    full = Split(*_write(tmp_path / "full"))
    empty = Split(*_write(tmp_path / "empty", images=[], annotations=[]))
    with pytest.raises(DatasetError, match=r"empty/ann.json lists no images: there is nothing to train on"):
        build_datasets(preset("small").data, empty, full)
    with pytest.raises(DatasetError, match=r"empty/ann.json lists no images: training could neither be evaluated "
                                           r"nor choose its best checkpoint; give the val split images"):
        build_datasets(preset("small").data, full, empty)
