"""Box counts at a threshold: found objects against pycocotools' own matching, duplicates and
boxes on nothing on scenes drawn by hand, and the numbers `detr eval` prints."""

import contextlib
import io
import json
import random

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detr.cli import main
from detr.engine.box_counts import BoxCounts, count_boxes


def _truth(boxes_by_image: dict[int, list[tuple[int, list[float]]]], crowd: set[int] = frozenset()):
    annotations, next_id = [], 1
    for image_id, boxes in boxes_by_image.items():
        for category, box in boxes:
            annotations.append({"id": next_id, "image_id": image_id, "category_id": category, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": int(next_id in crowd)})
            next_id += 1
    return {"images": [{"id": i, "width": 200, "height": 200} for i in boxes_by_image],
            "annotations": annotations, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def _det(image_id, category, box, score):
    return {"image_id": image_id, "category_id": category, "bbox": box, "score": score}


def test_a_second_box_on_a_found_object_is_a_duplicate_and_a_box_elsewhere_is_on_nothing():
    truth = _truth({1: [(1, [10, 10, 40, 40]), (2, [100, 100, 30, 30])]})
    results = [
        _det(1, 1, [11, 10, 40, 40], 0.9),  # finds object 1
        _det(1, 1, [10, 12, 40, 38], 0.8),  # object 1 again
        _det(1, 2, [10, 10, 40, 40], 0.7),  # on object 1 but the wrong class: on nothing
        _det(1, 2, [150, 150, 20, 20], 0.6),  # background
        _det(1, 2, [100, 100, 30, 30], 0.3),  # would find object 2, but below the threshold
    ]
    counts = count_boxes(truth, results, threshold=0.5)
    assert counts == BoxCounts(threshold=0.5, objects=2, boxes=4, found=1, duplicates=1, on_nothing=2)
    assert counts.duplicate_rate == 0.25
    lower = count_boxes(truth, results, threshold=0.2)
    assert (lower.boxes, lower.found, lower.duplicates, lower.on_nothing) == (5, 2, 1, 2)


def test_the_higher_score_claims_first_whatever_the_file_order():
    truth = _truth({1: [(1, [10, 10, 40, 40])]})
    loose = _det(1, 1, [14, 14, 40, 40], 0.6)  # IoU 0.68 with the object
    tight = _det(1, 1, [10, 10, 40, 40], 0.9)
    for results in ([loose, tight], [tight, loose]):
        assert count_boxes(truth, results) == BoxCounts(0.5, 1, 2, 1, 1, 0)


def test_a_box_between_a_claimed_and_a_free_object_finds_the_free_one():
    # Two side-by-side objects; the second box overlaps both at IoU >= 0.5 and the first
    # has claimed the better of the two: it still finds the other, as COCO matches.
    truth = _truth({1: [(1, [0, 0, 40, 40]), (1, [8, 0, 40, 40])]})
    results = [_det(1, 1, [0, 0, 40, 40], 0.9), _det(1, 1, [4, 0, 40, 40], 0.8)]
    assert count_boxes(truth, results) == BoxCounts(0.5, 2, 2, 2, 0, 0)


def test_a_box_claims_the_free_object_it_overlaps_most():
    # The first box overlaps the left object at IoU 0.67 and the right one at 1: it claims the
    # right one, so the second box, which overlaps only the right one, is a duplicate.
    truth = _truth({1: [(1, [0, 0, 40, 40]), (1, [8, 0, 40, 40])]})
    results = [_det(1, 1, [8, 0, 40, 40], 0.9), _det(1, 1, [16, 0, 40, 40], 0.8)]
    assert count_boxes(truth, results) == BoxCounts(0.5, 2, 2, 1, 1, 0)


def test_crowd_regions_are_not_objects():
    truth = _truth({1: [(1, [10, 10, 40, 40]), (1, [100, 100, 50, 50])]}, crowd={2})
    results = [_det(1, 1, [100, 100, 50, 50], 0.9)]
    assert count_boxes(truth, results) == BoxCounts(0.5, 1, 1, 0, 0, 1)


def _cocoeval_matched(truth, results, threshold):
    """Detections above the threshold that pycocotools matches at IoU 0.5, all areas, no cap."""
    shown = [r for r in results if r["score"] >= threshold]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = truth
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(shown), "bbox")
        evaluator.params.iouThrs = np.array([0.5])
        evaluator.params.maxDets = [len(shown)]
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluator.evaluate()
    return sum(int((e["dtMatches"][0] > 0).sum()) for e in evaluator.evalImgs if e is not None)


@pytest.mark.parametrize("seed", range(6))
def test_found_objects_are_the_boxes_pycocotools_matches(seed):
    rng = random.Random(seed)

    def jitter(box, size):
        return [v + rng.uniform(-size, size) for v in box[:2]] + [max(2.0, v + rng.uniform(-size, size))
                                                                 for v in box[2:]]

    objects = {i: [(rng.choice((1, 2)), [rng.uniform(0, 150), rng.uniform(0, 150), rng.uniform(8, 50),
                                         rng.uniform(8, 50)]) for _ in range(rng.randint(1, 8))] for i in range(1, 5)}
    truth = _truth(objects)
    results = []
    for image_id, boxes in objects.items():
        for category, box in boxes:
            for _ in range(rng.randint(0, 3)):  # several boxes an object: duplicates and near misses
                results.append(_det(image_id, rng.choice((category, category, 3 - category)),
                                    jitter(box, 6), round(rng.random(), 3)))
        results += [_det(image_id, 1, jitter([80, 80, 20, 20], 60), round(rng.random(), 3)) for _ in range(2)]
    counts = count_boxes(truth, results, threshold=0.3)
    assert counts.found == _cocoeval_matched(truth, results, 0.3)
    assert counts.boxes == sum(r["score"] >= 0.3 for r in results)
    assert counts.found + counts.duplicates + counts.on_nothing == counts.boxes
    assert counts.objects == len(truth["annotations"])


def test_detr_eval_prints_the_counts_at_the_users_threshold(tiny_data, tmp_path, capsys):
    from tests.conftest import save_tiny_checkpoint

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt", ["circle", "square", "triangle", "cross"])
    results = tmp_path / "dets.json"
    for threshold in ("0.0", "1.0"):
        assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(tiny_data), "--out", str(results),
                     "--no-progress", "--threshold", threshold]) == 0
        printed = capsys.readouterr().out
        expected = count_boxes(json.loads((tiny_data / "val" / "annotations.json").read_text()),
                               json.loads(results.read_text()), float(threshold))
        assert expected.describe() in printed
    assert expected.boxes == 0  # nothing scores 1.0; at 0.0 every record counted
