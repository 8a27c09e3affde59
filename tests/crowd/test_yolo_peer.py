"""The YOLO peer's own code, without Ultralytics (which the package never depends on): the
COCO -> YOLO label conversion, the mapping of its detections back to COCO records, and
`detr crowd --quick` printing the install line when it is missing."""

import builtins
import json

import pytest
import torch

from detr.cli import main
from detr.config import CrowdBenchmarkConfig
from detr.crowd import comparison, yolo_peer
from detr.crowd.yolo_labels import write_yolo_dataset
from detr.crowd.yolo_peer import INSTALL_HINT, yolo_image_size, yolo_name, yolo_records
from detr.data.coco_records import read_coco
from detr.data.sources import Split
from tests.data.tiny_coco import write_coco

CATEGORIES = [{"id": 5, "name": "ring"}, {"id": 9, "name": "star"}]  # ids with a gap: labels are places


def _split(folder, images, annotations):
    return write_coco(folder / "annotations.json", images, annotations, CATEGORIES, folder / "images")


@pytest.fixture
def yolo_dataset(tmp_path):
    train_json = _split(tmp_path / "train",
                        [{"id": 3, "file_name": "a.png", "width": 64, "height": 48},
                         {"id": 4, "file_name": "b.png", "width": 40, "height": 40}],
                        [{"id": 1, "image_id": 3, "category_id": 9, "bbox": [4.5, 6, 20, 10.25]},
                         {"id": 2, "image_id": 3, "category_id": 5, "bbox": [30, 0, 34, 48]},
                         {"id": 3, "image_id": 3, "category_id": 5, "bbox": [1, 1, 3, 3], "iscrowd": 1}])
    val_json = _split(tmp_path / "val", [{"id": 1, "file_name": "c.png", "width": 33, "height": 17}],
                      [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [1.1, 2.2, 3.3, 4.4]}])
    train, val = read_coco(train_json), read_coco(val_json)
    dataset_yaml = write_yolo_dataset(train, tmp_path / "train" / "images", val, tmp_path / "val" / "images",
                                      tmp_path / "yolo")
    return tmp_path, train, val, dataset_yaml


def _read_back(label_file, width, height, category_ids):
    """What Ultralytics reads from a label file, turned back into COCO (category id, xywh) pairs."""
    boxes = []
    for line in label_file.read_text().splitlines():
        cls, cx, cy, w, h = line.split()
        w, h = float(w) * width, float(h) * height
        boxes.append((category_ids[int(cls)], [float(cx) * width - w / 2, float(cy) * height - h / 2, w, h]))
    return boxes


def test_yolo_labels_read_back_as_the_coco_boxes(yolo_dataset):
    tmp_path, train, val, _ = yolo_dataset
    ids = train.categories.ids
    for split, records in (("train", train), ("val", val)):
        for image_id, info in records.images.items():
            label = tmp_path / "yolo" / split / "labels" / info["file_name"].replace(".png", ".txt")
            back = _read_back(label, info["width"], info["height"], ids)
            expected = [(a["category_id"], a["bbox"]) for a in records.annotations[image_id] if not a.get("iscrowd")]
            assert [c for c, _ in back] == [c for c, _ in expected]
            for (_, box), (_, coco) in zip(back, expected):
                assert box == pytest.approx(coco, abs=1e-9)
    assert (tmp_path / "yolo" / "train" / "labels" / "b.txt").read_text() == ""  # background image
    assert len((tmp_path / "yolo" / "train" / "labels" / "a.txt").read_text().splitlines()) == 2  # crowd left out


def test_yolo_images_are_links_and_the_yaml_names_classes_in_category_order(yolo_dataset):
    tmp_path, _, _, dataset_yaml = yolo_dataset
    image = tmp_path / "yolo" / "train" / "images" / "a.png"
    assert image.is_symlink() and image.resolve() == (tmp_path / "train" / "images" / "a.png").resolve()
    lines = dataset_yaml.read_text().splitlines()  # read as text: PyYAML is not a dependency
    assert lines[-3:] == ["names:", '  0: "ring"', '  1: "star"']
    assert lines[1].endswith("train/images") and lines[2].endswith("val/images")


class _FakeBoxes:
    """The parts of an Ultralytics `Results.boxes` that the peer reads (tensors there)."""

    def __init__(self, xyxy, conf, cls):
        self.xyxy, self.conf, self.cls = xyxy, conf, cls


def test_yolo_detections_become_coco_records():
    boxes = _FakeBoxes([[10.0, 20.0, 40.0, 30.5], [0.0, 0.0, 5.0, 5.0]], [0.91234567, 0.002], [1.0, 0.0])
    records = yolo_records(7, boxes.xyxy, boxes.conf, boxes.cls, (5, 9))
    assert records == [{"image_id": 7, "category_id": 9, "bbox": [10.0, 20.0, 30.0, 10.5], "score": 0.91235},
                       {"image_id": 7, "category_id": 5, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.002}]
    assert yolo_records(7, [], [], [], (5, 9)) == []


class _FakeResult:
    def __init__(self, path, boxes):
        self.path, self.boxes = path, boxes


class _FakeYolo:
    """Stands in for a trained Ultralytics model: one fixed box on each image it is given."""

    def __init__(self):
        self.calls = []

    def predict(self, source, **kwargs):
        self.calls.append(kwargs)
        return (_FakeResult(path, _FakeBoxes(torch.tensor([[1.0, 2.0, 11.0, 7.0]]), torch.tensor([0.5]),
                                                   torch.tensor([1.0]))) for path in source)


def test_predict_yolo_maps_every_val_image_to_coco_records(yolo_dataset):
    tmp_path, train, _, _ = yolo_dataset
    model = _FakeYolo()
    records = yolo_peer.predict_yolo(model, CrowdBenchmarkConfig(), Split(tmp_path / "val" / "images",
                                     tmp_path / "val" / "annotations.json"), train.categories, 100, torch.device("cpu"))
    assert records == [{"image_id": 1, "category_id": 9, "bbox": [1.0, 2.0, 10.0, 5.0], "score": 0.5}]
    assert model.calls[0]["imgsz"] == 128 and model.calls[0]["conf"] == 0.001 and model.calls[0]["max_det"] == 100


def test_yolo_sizes_and_names():
    assert [yolo_image_size(s) for s in (16, 32, 100, 128, 129)] == [32, 32, 128, 128, 160]
    assert yolo_name("yolov8n.yaml") == "YOLOv8n" and yolo_name("yolo11s.yaml") == "YOLO11s"


@pytest.fixture
def without_ultralytics(monkeypatch):
    """Ultralytics absent, as in CI, even where a developer has installed it."""
    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.split(".")[0] == "ultralytics":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(comparison, "yolo_installed", lambda: False)
    monkeypatch.setattr(builtins, "__import__", refuse)


def test_quick_comparison_without_ultralytics_prints_the_install_line(tmp_path, capsys, without_ultralytics):
    assert main(["crowd", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert INSTALL_HINT in printed and "pip install ultralytics" in printed and "AGPL-3.0" in printed
    assert "DETR+NMS@0.45" in printed and "YOLO" not in printed.replace(INSTALL_HINT, "")
    report = json.loads((tmp_path / "crowd.json").read_text())
    assert report["yolo_run"] is None and set(report["steps"]) == {"DETR", "FCOS R18-FPN"}
    assert all("duplicate_rate" in row["box_counts"] for row in report["rows"])
    assert not (tmp_path / "yolo_val_detections.json").exists()


def test_the_latency_peer_hands_ultralytics_bgr_height_width_channel_arrays():
    """Ultralytics reads numpy images as OpenCV does (BGR, H x W x 3): the decoded RGB tensors
    the benchmark holds are turned into that, same pixels, for both of its paths."""
    seen = []

    class FakeModel:
        def predict(self, source, **options):
            seen.append((source, options))
            return []

    peer = object.__new__(yolo_peer.YoloLatency)
    peer.size, peer.threshold = 64, 0.5
    peer._torch_model, peer._onnx_model = FakeModel(), FakeModel()
    image = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    peer.torch([image])
    peer.onnx([image, image])
    (first, options), (second, _) = seen
    assert len(first) == 1 and len(second) == 2 and first[0].shape == (5, 7, 3)
    assert (first[0][..., 0] == image[2].numpy()).all() and (first[0][..., 2] == image[0].numpy()).all()
    assert options["imgsz"] == 64 and options["conf"] == 0.5 and options["device"] == "cpu"
