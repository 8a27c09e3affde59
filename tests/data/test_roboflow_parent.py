"""Roboflow's COCO exports list the project as a category of its own: it must not become a class."""

import json
import logging

import pytest

from detr.config import DataConfig
from detr.data.coco import Categories, CocoDetection, DatasetError
from detr.data.sources import build_datasets, find_split
from tests.data.tiny_coco import write_tiny_coco

# As Roboflow writes them: id 0 is the project, the parent of every real class.
ROBOFLOW_CATEGORIES = [{"id": 0, "name": "fruit", "supercategory": "none"},
                       {"id": 1, "name": "apple", "supercategory": "fruit"},
                       {"id": 2, "name": "pear", "supercategory": "fruit"}]


def _write_split(folder, categories, category_ids):
    """A Roboflow split folder: its images beside _annotations.coco.json, one box each of `category_ids`."""
    annotations = folder / "_annotations.coco.json"
    write_tiny_coco(folder, annotations, count=len(category_ids))
    data = json.loads(annotations.read_text())
    for annotation, category in zip(data["annotations"], category_ids):
        annotation["category_id"] = category
    annotations.write_text(json.dumps(dict(data, categories=categories)))
    return annotations


def test_the_parent_category_is_left_out_of_train_and_val(tmp_path, caplog):
    _write_split(tmp_path / "train", ROBOFLOW_CATEGORIES, [1, 2])
    _write_split(tmp_path / "valid", ROBOFLOW_CATEGORIES, [2, 2])
    with caplog.at_level(logging.INFO, logger="detr.data.coco_records"):
        train, val = build_datasets(DataConfig(), find_split(tmp_path, "train"), find_split(tmp_path, "val"))
    assert train.categories.ids == (1, 2) and train.categories.names == ("apple", "pear")
    assert val.categories == train.categories
    assert val.target_boxes(val.image_ids[0])[1].tolist() == [1]  # pear: label 1 of 2
    notes = [r.getMessage() for r in caplog.records if "left out category 0 ('fruit')" in r.getMessage()]
    assert len(notes) == 2 and all("\n" not in n for n in notes)  # one line for each split
    assert [c["id"] for c in val.ground_truth()["categories"]] == [1, 2]


def test_val_without_the_parent_still_matches_a_train_split_with_it(tmp_path):
    _write_split(tmp_path / "train", ROBOFLOW_CATEGORIES, [1, 2])
    _write_split(tmp_path / "valid", ROBOFLOW_CATEGORIES[1:], [1])
    train, val = build_datasets(DataConfig(), find_split(tmp_path, "train"), find_split(tmp_path, "val"))
    assert val.categories.ids == train.categories.ids == (1, 2)


@pytest.mark.parametrize("categories, used", [
    (ROBOFLOW_CATEGORIES, [0, 1]),  # an annotation uses the parent: it is a class
    ([dict(c, supercategory="fruit" if c["id"] == 1 else "tree") for c in ROBOFLOW_CATEGORIES], [1, 2]),
    ([dict(c, supercategory="none") for c in ROBOFLOW_CATEGORIES], [1, 2]),  # an unused class, no parent
    ([dict(c, supercategory="fruit") for c in ROBOFLOW_CATEGORIES], [1, 2]),  # its own supercategory
])
def test_categories_that_are_not_the_roboflow_parent_are_kept(tmp_path, categories, used):
    annotations = _write_split(tmp_path, categories, used)
    assert CocoDetection(tmp_path, annotations).categories.ids == (0, 1, 2)


def test_a_lone_category_is_never_dropped(tmp_path):
    annotations = _write_split(tmp_path, ROBOFLOW_CATEGORIES[:1], [])
    assert CocoDetection(tmp_path, annotations).categories.ids == (0,)


def test_a_model_with_the_parent_still_reads_a_split_with_it(tmp_path):
    """Checkpoints trained before the parent was left out have it as a class: they still evaluate."""
    annotations = _write_split(tmp_path, ROBOFLOW_CATEGORIES, [1, 2])
    model_categories = Categories((0, 1, 2), ("fruit", "apple", "pear"))
    dataset = CocoDetection(tmp_path, annotations, categories=model_categories)
    assert dataset.categories.ids == (0, 1, 2)
    assert dataset.target_boxes(dataset.image_ids[0])[1].tolist() == [1]
    with pytest.raises(DatasetError, match="categories \\[2\\] are not among the model's"):
        CocoDetection(tmp_path, annotations, categories=Categories((0, 1), ("fruit", "apple")))
