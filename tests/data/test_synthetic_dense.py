from dataclasses import replace

import torch
from torchvision.ops import box_convert, box_iou

from detr.data.coco import CocoDetection
from detr.config import DenseSynthConfig
from detr.data.synthetic_dense import CLASSES, render, write_dataset
from tests.data.synthetic_checks import assert_boxes_match_pixels, file_bytes


def _same_class_iou(annotations: list[dict]) -> torch.Tensor:
    boxes = box_convert(torch.tensor([a["bbox"] for a in annotations]), "xywh", "xyxy")
    labels = torch.tensor([a["category_id"] for a in annotations])
    return box_iou(boxes, boxes).fill_diagonal_(0) * (labels[:, None] == labels[None])


def test_written_set_loads_with_many_heavily_overlapping_objects_per_image(tmp_path):
    out = write_dataset(tmp_path, DenseSynthConfig(train_images=6, val_images=3))
    train = CocoDetection(out / "train" / "images", out / "train" / "annotations.json")
    assert len(train) == 6 and train.categories.names == CLASSES and not train.problems
    counts = [len(train.annotations[i]) for i in train.image_ids]
    assert min(counts) >= 15 and max(counts) <= 40
    best = [_same_class_iou(train.annotations[i]).max().item() for i in train.image_ids]
    assert sum(b > 0.5 for b in best) >= 4 and max(best) > 0.7


def test_neighbour_overlaps_span_the_configured_range():
    config = DenseSynthConfig()
    best_per_box = torch.cat([_same_class_iou(render(config, "train", i).annotations).max(dim=1).values
                              for i in range(20)])
    paired = best_per_box[best_per_box > 0]
    assert paired.min() < 0.2 and paired.max() > 0.8 and (paired > 0.5).float().mean() > 0.2


def test_boxes_cover_the_drawn_shapes_and_nothing_is_drawn_outside_them():
    config = DenseSynthConfig()
    empty = replace(config, min_objects=0, max_objects=0)
    for index in range(5):
        rendered = render(config, "val", index)
        assert_boxes_match_pixels(rendered.image, render(empty, "val", index).image, rendered.annotations)


def test_same_seed_same_bytes(tmp_path):
    config = DenseSynthConfig(train_images=3, val_images=2)
    assert file_bytes(write_dataset(tmp_path / "a", config)) == file_bytes(write_dataset(tmp_path / "b", config))
