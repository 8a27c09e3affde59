import json

import pytest
import torch

from detr.cli import main
from detr.crowd.figure import most_crowded_images
from detr.crowd.nms_ceiling import ground_truth_as_detections
from detr.crowd.peer import build_peer, peer_transforms, predict_peer, train_peer
from detr.crowd.recall import apply_nms, best_f1_score_threshold, matched_annotations
from detr.crowd.table import format_table, markdown_table, score
from detr.data.coco import CocoDetection
from detr.data.sources import find_split
from detr.engine.local_processes import process_count
from tests.crowd.test_recall import _ground_truth
from tests.data.tiny_coco import write_coco


def _scored(pairs):
    """(bbox, score) pairs on image 1 and 2 of the recall test's ground truth."""
    return [{"image_id": image, "category_id": 3, "bbox": box, "score": s} for image, box, s in pairs]


def test_best_f1_threshold_and_matches_above_a_score():
    gt = _ground_truth()
    detections = _scored([(1, [0, 0, 10, 10], 0.9),  # finds annotation 1
                          (2, [80, 80, 5, 5], 0.8),  # a false positive
                          (2, [40, 40, 20, 20], 0.3)])  # finds annotation 3
    # F1 after 1, 2, 3 detections: 2/4, 2/5, 4/6 (3 objects): the best keeps all three.
    assert best_f1_score_threshold(gt, detections) == 0.3
    assert matched_annotations(gt, detections, 0.5, min_score=0.5) == {1}
    assert matched_annotations(gt, detections, 0.5, min_score=0.3) == {1, 3}
    # Without the low-scoring hit the best is to stop after the first detection.
    assert best_f1_score_threshold(gt, detections[:2]) == 0.9


def test_the_ground_truth_row_is_the_nms_ceiling():
    gt = _ground_truth()
    perfect = ground_truth_as_detections(gt, seed=3)
    assert [r["bbox"] for r in perfect] == [a["bbox"] for a in gt["annotations"]]
    kept = score("GT+NMS@0.45", gt, apply_nms(perfect, 0.45))  # the IoU-0.6 pair loses one
    assert kept.recall[0][0] == 1.0 and kept.recall[0][2] == 0.5 and kept.recall[1][2] == 0.5
    assert score("GT+NMS@0.7", gt, apply_nms(perfect, 0.7)).recall[1][2] == 1.0


def test_tables_have_one_cell_per_bin_and_match_iou():
    gt = _ground_truth()
    rows = [score("perfect", gt, ground_truth_as_detections(gt)), score("nothing", gt, [])]
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 6 and all(line.count("|") == 14 for line in lines[:4])  # then a note on the counts
    text = format_table(rows)
    assert "recall at match IoU 0.75" in text and text.splitlines()[-2].split()[0] == "nothing"


def test_most_crowded_images_come_from_the_ground_truth():
    gt = _ground_truth()
    assert most_crowded_images(gt, 1) == [1]
    assert most_crowded_images(gt, 5) == [1, 2]


@pytest.fixture
def one_image_dataset(tmp_path):
    write_coco(tmp_path / "annotations.json", [{"id": 7, "file_name": "a.png", "width": 64, "height": 48}],
               [{"id": 1, "image_id": 7, "category_id": 20, "bbox": [4, 6, 20, 10]}],
               [{"id": 10, "name": "a"}, {"id": 20, "name": "b"}], tmp_path / "images", colour=(90, 120, 150))
    return tmp_path


def test_peer_targets_are_torchvision_style(one_image_dataset):
    dataset = CocoDetection(one_image_dataset / "images", one_image_dataset / "annotations.json",
                            peer_transforms(train=False))
    image, target = dataset[0]
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1 and image.shape == (3, 48, 64)
    assert target["boxes"].tolist() == [[4, 6, 24, 16]]
    assert target["labels"].tolist() == [2]  # category 20 is label 1; 0 is the peer's background


def test_peer_trains_and_reports_coco_records(one_image_dataset):
    dataset = CocoDetection(one_image_dataset / "images", one_image_dataset / "annotations.json",
                            peer_transforms(train=True))
    model = build_peer(num_classes=2, image_size=48)
    run = train_peer(model, dataset, minutes=0.0, batch_size=1, progress=False)
    assert run["steps"] == 1
    model.score_thresh = 0.0  # an untrained peer scores everything low
    records = predict_peer(model, CocoDetection(one_image_dataset / "images", one_image_dataset / "annotations.json",
                                                peer_transforms(train=False)), progress=False)
    assert records and {r["category_id"] for r in records} <= {10, 20} and {r["image_id"] for r in records} == {7}


def test_quick_comparison_end_to_end(tmp_path, capsys):
    assert main(["crowd", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("GT+NMS@0.45", "GT+NMS@0.7", "FCOS R18-FPN (NMS@0.6)", "DETR+NMS@0.45", "[0.7,1]"):
        assert name in printed
    report = json.loads((tmp_path / "crowd.json").read_text())
    assert [r["name"] for r in report["rows"]][-2:] == ["DETR", "DETR+NMS@0.45"]
    assert report["steps"]["DETR"] > 0 and report["steps"]["FCOS R18-FPN"] > 0
    # DETR trains as `detr train` would: in train.processes processes (at most one per core), each a batch a step
    train = report["detr_config"]["train"]
    processes = process_count(train["processes"], torch.device("cpu"))
    assert report["detr_images"] == report["steps"]["DETR"] * processes * train["batch_size"]
    assert (tmp_path / "side_by_side.png").stat().st_size > 10_000
    assert find_split(tmp_path / "data", "train")  # the quick data lives in the output folder


def test_the_count_columns_match_hand_counted_boxes():
    gt = _ground_truth()
    detections = _scored([(1, [0, 0, 10, 10], 0.95),  # finds annotation 1
                          (2, [40, 40, 20, 20], 0.9),  # finds annotation 3
                          (2, [41, 40, 20, 20], 0.8),  # a second box on annotation 3: a duplicate
                          (2, [80, 80, 5, 5], 0.7),  # on nothing
                          (2, [0, 80, 5, 5], 0.3)])  # below the threshold: not counted
    row = score("hand", gt, detections)
    counts = row.counts
    assert (counts.boxes, counts.found, counts.duplicates, counts.on_nothing, counts.objects) == (4, 2, 1, 1, 3)
    assert row.shares() == (2 / 3, 0.25, 0.25)
    assert row.to_dict()["box_counts"]["duplicate_rate"] == 0.25
    assert markdown_table([row]).splitlines()[2].endswith("| 0.667 | 0.250 | 0.250 |")
    assert format_table([row]).splitlines()[2].split()[-3:] == ["0.667", "0.250", "0.250"]
    every_box = score("GT", gt, ground_truth_as_detections(gt), count_threshold=0.0)
    assert every_box.shares() == (1.0, 0.0, 0.0)
    assert "GT at score >= 0" in format_table([row, row, every_box])
