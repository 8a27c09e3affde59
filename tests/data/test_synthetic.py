import hashlib
import json

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou

from detr.config import SynthConfig
from detr.data.coco import CocoDetection
from detr.data.synthetic import CLASSES, render, write_dataset


def test_rendering_is_deterministic_and_boxes_are_inside():
    config = SynthConfig()
    for index in range(20):
        a, anns_a = render(config, "train", index)
        b, anns_b = render(config, "train", index)
        assert np.array_equal(np.asarray(a), np.asarray(b)) and anns_a == anns_b
        for ann in anns_a:
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= config.image_size + 0.01 and y + h <= config.image_size + 0.01
    assert not np.array_equal(np.asarray(render(config, "train", 0)[0]), np.asarray(render(config, "val", 0)[0]))


def test_crowded_images_hold_heavily_overlapping_same_class_objects():
    config = SynthConfig()
    best = []
    for index in range(200):
        _, anns = render(config, "train", index)
        boxes = torch.tensor([a["bbox"] for a in anns])
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([a["category_id"] for a in anns])
        iou = box_iou(boxes, boxes).fill_diagonal_(0) * (labels[:, None] == labels[None])
        best.append(iou.max().item())
    assert max(best) > 0.7
    assert sum(b > 0.5 for b in best) >= 10


def test_written_dataset_loads_as_coco(tmp_path):
    out = write_dataset(tmp_path, SynthConfig(train_images=6, val_images=3))
    train = CocoDetection(out / "train" / "images", out / "train" / "annotations.json")
    assert len(train) == 6 and train.categories.names == CLASSES
    stamp = json.loads((out / "synth.json").read_text())
    assert stamp["config"]["train_images"] == 6
    mtime = (out / "train" / "annotations.json").stat().st_mtime_ns
    write_dataset(tmp_path, SynthConfig(train_images=6, val_images=3))  # complete: not rewritten
    assert (out / "train" / "annotations.json").stat().st_mtime_ns == mtime


def test_output_is_unchanged_since_the_generators_shared_their_parts(tmp_path):
    # md5s of the 6/3-image dataset written by the code before synthetic_writer and
    # synthetic_drawing were split out of it (commit 58eb099); pixels rather than PNG
    # bytes, which depend on the zlib build.
    out = write_dataset(tmp_path, SynthConfig(train_images=6, val_images=3))
    jsons = {name: hashlib.md5((out / name).read_bytes()).hexdigest()
             for name in ("synth.json", "train/annotations.json", "val/annotations.json")}
    assert jsons == {"synth.json": "ef7772b0d3ea68ce07d22dd18d12f408",
                     "train/annotations.json": "34502dd145d7d5e6801e2f88023c8d37",
                     "val/annotations.json": "5e67505db7c46ba8dfdcbd31c89dded8"}
    pixels = hashlib.md5()
    for path in sorted(out.rglob("*.png")):
        pixels.update(np.asarray(Image.open(path)).tobytes())
    assert pixels.hexdigest() == "f6f8dfaca92ad9755123883e96ae3ec1"
