import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detr.engine.evaluate import coco_evaluate


def _ground_truth():
    return {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [50, 50, 40, 20], "area": 800, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 5, "bbox": [5, 60, 20, 30], "area": 600, "iscrowd": 0},
        ],
        "categories": [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}],
    }


def test_perfect_detections_score_one():
    gt = _ground_truth()
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in gt["annotations"]]
    stats, summary, per_class = coco_evaluate(gt, results)
    assert stats["AP"] == pytest.approx(1.0) and per_class == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    assert summary.count("Average") == 12


def test_matches_pycocotools_run_directly(tmp_path):
    gt = _ground_truth()
    results = [
        {"image_id": 1, "category_id": 5, "bbox": [12, 11, 28, 30], "score": 0.8},
        {"image_id": 1, "category_id": 9, "bbox": [40, 50, 40, 20], "score": 0.6},
        {"image_id": 2, "category_id": 5, "bbox": [5, 60, 20, 30], "score": 0.3},
        {"image_id": 2, "category_id": 9, "bbox": [5, 60, 20, 30], "score": 0.7},
    ]
    stats, _, _ = coco_evaluate(gt, results)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    coco = COCO(str(tmp_path / "gt.json"))
    evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert [stats[k] for k in stats] == pytest.approx(list(evaluator.stats))


def test_no_detections_is_zero_not_a_crash():
    stats, summary, _ = coco_evaluate(_ground_truth(), [])
    assert stats["AP"] == 0 and summary == "no detections"
