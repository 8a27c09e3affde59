"""benchmarks/agnostic_ap.py: classes, finding objects and duplicates told apart, on hand-made results."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "agnostic_ap", Path(__file__).parents[2] / "benchmarks" / "agnostic_ap.py")
agnostic_ap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(agnostic_ap)


def _truth():
    images = [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in (1, 2)]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
                   {"id": 2, "image_id": 2, "category_id": 2, "bbox": [50, 50, 30, 30], "area": 900, "iscrowd": 0}]
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def _records():
    """Image 1: its object's box under the wrong class first (0.9) and the right one (0.5), and a
    near-duplicate (IoU 0.8) at 0.8; image 2: its object, right class, at 0.7."""
    return [{"image_id": 1, "category_id": 2, "bbox": [10, 10, 40, 40], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.5},
            {"image_id": 1, "category_id": 2, "bbox": [12, 12, 40, 40], "score": 0.8},
            {"image_id": 2, "category_id": 2, "bbox": [50, 50, 30, 30], "score": 0.7}]


def test_each_box_counts_once_at_its_best_score():
    boxes = agnostic_ap.distinct_boxes(_records())
    assert sorted(b["score"] for b in boxes) == [0.7, 0.8, 0.9]
    assert {b["category_id"] for b in boxes} == {1}


def test_the_duplicate_costs_agnostic_ap_and_nms_gives_it_back():
    row = agnostic_ap.diagnose(_truth(), _records())
    # Ranked 0.9 (object 1), 0.8 (its duplicate), 0.7 (object 2): precision 2/3 at full recall.
    assert row["agnostic AP50"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-3)
    assert row["agnostic+NMS AP50"] == pytest.approx(1.0)
    assert row["covered@0.5"] == 1.0
    assert row["class right"] == 0.5  # object 1's best covering box names the wrong class
    assert row["AP50"] < row["agnostic AP50"]
