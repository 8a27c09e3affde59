import math

from detr.crowd.recall import annotation_bins, apply_nms, matched_annotations, recall_by_bin


def _ground_truth():
    # Image 1: a same-class pair at IoU 0.6 (xywh [0,0,10,10] and [2.5,0,10,10]); image 2: one lone box.
    return {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [2.5, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [40, 40, 20, 20], "area": 400, "iscrowd": 0},
        ],
        "categories": [{"id": 3, "name": "thing"}],
    }


def _perfect(scores=(0.9, 0.8, 0.7)):
    gt = _ground_truth()
    return [{"image_id": a["image_id"], "category_id": 3, "bbox": a["bbox"], "score": s}
            for a, s in zip(gt["annotations"], scores)]


def test_bins_of_annotations():
    assert annotation_bins(_ground_truth()) == {1: 2, 2: 2, 3: 0}


def test_perfect_detections_match_everything_and_nms_removes_one_of_the_pair():
    gt = _ground_truth()
    assert matched_annotations(gt, _perfect(), 0.75) == {1, 2, 3}
    after = apply_nms(_perfect(), 0.45)
    assert len(after) == 2 and {r["score"] for r in after} == {0.9, 0.7}
    assert matched_annotations(gt, after, 0.5) == {1, 3}
    recall = recall_by_bin(gt, after, 0.5)
    assert recall[0] == 1.0 and recall[2] == 0.5 and math.isnan(recall[1]) and math.isnan(recall[3])
    assert len(apply_nms(_perfect(), 0.7)) == 3


def test_an_imprecise_box_counts_at_a_lax_iou_only():
    gt = _ground_truth()
    shifted = [{"image_id": 2, "category_id": 3, "bbox": [43, 43, 20, 20], "score": 0.9}]  # IoU ~0.57
    assert matched_annotations(gt, shifted, 0.5) == {3}
    assert matched_annotations(gt, shifted, 0.75) == set()
    assert matched_annotations(gt, [], 0.5) == set()
