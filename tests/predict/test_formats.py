"""The VOC and YOLO writers, read back with xml.etree and plain parsing."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from detr.inference import Detections
from detr.predict.formats import Prediction, write_json, write_voc, write_yolo

CLASSES = ["ant", "bee", "cat"]
WIDTH, HEIGHT = 120, 80


@pytest.fixture
def prediction():
    # The last box reaches past the right and bottom edges: both formats clip it to the image.
    boxes = torch.tensor([[10.3, 5.6, 40.2, 30.7], [0.0, 0.0, 120.0, 80.0], [95.25, 60.5, 130.0, 90.0]])
    labels = torch.tensor([2, 0, 1])
    detections = Detections(boxes, torch.tensor([0.91234567, 0.5, 0.0625]), labels,
                            [CLASSES[i] for i in labels.tolist()], [7, 3, 5])
    return Prediction("street", Path("/data/street.jpg"), WIDTH, HEIGHT, 3, detections)


def clipped(box):
    x0, y0, x1, y1 = box
    return [min(max(x0, 0), WIDTH), min(max(y0, 0), HEIGHT), min(max(x1, 0), WIDTH), min(max(y1, 0), HEIGHT)]


def test_voc_xml_holds_size_names_boxes_and_scores(prediction, tmp_path):
    folder = write_voc([prediction], tmp_path, CLASSES)
    root = ET.parse(folder / "street.xml").getroot()
    assert root.tag == "annotation" and root.findtext("filename") == "street.jpg"
    assert [root.findtext(f"size/{t}") for t in ("width", "height", "depth")] == ["120", "80", "3"]
    objects = root.findall("object")
    assert [o.findtext("name") for o in objects] == prediction.detections.names
    for obj, box, score in zip(objects, prediction.detections.boxes.tolist(),
                               prediction.detections.scores.tolist()):
        assert float(obj.findtext("score")) == pytest.approx(score, abs=1e-6)
        xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
        # VOC counts pixels from 1, inclusive: the box [x0, x1) is pixels x0 + 1 .. x1.
        for written, expected in zip((xmin - 1, ymin - 1, xmax, ymax), clipped(box)):
            assert abs(written - expected) <= 0.5
    whole = objects[1].find("bndbox")
    assert [whole.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")] == ["1", "1", "120", "80"]


def test_yolo_txt_reads_back_to_the_detections(prediction, tmp_path):
    folder = write_yolo([prediction], tmp_path, CLASSES)
    assert (folder / "classes.txt").read_text().splitlines() == CLASSES
    rows = [line.split() for line in (folder / "labels" / "street.txt").read_text().splitlines()]
    assert len(rows) == 3 and all(len(row) == 6 for row in rows)
    d = prediction.detections
    for row, box, label, name, score in zip(rows, d.boxes.tolist(), d.labels.tolist(), d.names, d.scores.tolist()):
        assert int(row[0]) == label and CLASSES[int(row[0])] == name
        x0, y0, x1, y1 = clipped(box)
        expected = [(x0 + x1) / 2 / WIDTH, (y0 + y1) / 2 / HEIGHT, (x1 - x0) / WIDTH, (y1 - y0) / HEIGHT, score]
        for written, value in zip(map(float, row[1:]), expected):
            assert abs(written - value) <= 1e-6


def test_json_keeps_one_record_per_image_or_frame(prediction, tmp_path):
    frame = Prediction("clip_000004", Path("clip.mp4"), WIDTH, HEIGHT, 3, prediction.detections, frame=4)
    records = json.loads(write_json([prediction, frame], tmp_path, CLASSES).read_text())
    assert records[0]["image"] == "/data/street.jpg" and "frame" not in records[0]
    assert (records[1]["video"], records[1]["frame"]) == ("clip.mp4", 4)
    assert records[1]["boxes"] == [[round(v, 2) for v in b] for b in prediction.detections.boxes.tolist()]


def test_an_image_without_detections_gets_an_empty_file(tmp_path):
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), [], [])
    prediction = Prediction("blank", Path("blank.png"), 32, 32, 3, empty)
    assert (write_yolo([prediction], tmp_path, CLASSES) / "labels" / "blank.txt").read_text() == ""
    assert ET.parse(write_voc([prediction], tmp_path, CLASSES) / "blank.xml").getroot().findall("object") == []
