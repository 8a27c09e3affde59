"""Boxes come back in the original image's pixels, through the real resize, padding and post-processing.

Each image is black with a red and a green rectangle at known pixels. A model
stand-in finds the rectangles (to a fraction of a pixel) in the batch it is given (resized, normalised,
zero-padded) and answers them as DETR would: cxcywh normalised by the image's
unpadded size, which it reads off the padding mask.
"""


import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from detr.config import preset
from detr.data.coco import Categories, CocoDetection
from detr.data.sources import eval_loader
from detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD, val_transforms
from detr.engine.evaluate import predict_dataset
from detr.inference import Predictor
from detr.model import build_model
from detr.model.outputs import Predictions
from tests.conftest import tiny_model_config
from tests.data.tiny_coco import write_coco

# (height, width) -> (red, green) boxes as x1, y1, x2, y2 in pixels
IMAGES = {
    (96, 160): ((10, 20, 70, 61), (100, 5, 157, 90)),
    (200, 120): ((3, 150, 40, 197), (60, 33, 119, 101)),
    (45, 301): ((0, 0, 30, 45), (250, 12, 290, 40)),
}


def _painted(size, boxes) -> np.ndarray:
    pixels = np.zeros((*size, 3), dtype=np.uint8)
    for channel, (x1, y1, x2, y2) in enumerate(boxes):
        pixels[y1:y2, x1:x2, channel] = 255
    return pixels


class RectangleFinder(nn.Module):
    """Answers query c with the rectangle painted in colour channel c, found in the model's input."""

    def forward(self, images, mask):
        if mask is None:  # a batch without padding, as Predictor passes it
            mask = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool)
        mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
        logits, boxes = torch.full((len(images), 2, 3), -10.0), torch.zeros(len(images), 2, 4)
        for b, (image, pad) in enumerate(zip(images, mask)):
            valid_h, valid_w = int((~pad).any(1).sum()), int((~pad).any(0).sum())
            intensity = (image[:, :valid_h, :valid_w] * std + mean).clamp(0, 1)  # padding is not black
            for c in range(2):
                # Resizing spreads an edge over a few pixels but keeps the profile's area and
                # centre: a sub-pixel measurement, so the check tests the pipeline, not this finder.
                across, down = intensity[c].amax(0), intensity[c].amax(1)
                at = torch.arange(len(across)) + 0.5, torch.arange(len(down)) + 0.5
                width, height = across.sum(), down.sum()
                cx, cy = (at[0] * across).sum() / width, (at[1] * down).sum() / height
                boxes[b, c] = torch.tensor([cx / valid_w, cy / valid_h, width / valid_w, height / valid_h])
                logits[b, c, c] = 10.0
        return Predictions(logits, boxes)


def _data_config(val_scale):
    data = preset("small").data
    data.val_scale = val_scale  # 64 shrinks every image; 128 enlarges most
    return data


@pytest.mark.parametrize("val_scale", [64, 128])
def test_predictor_boxes_land_on_the_original_pixels(val_scale):
    predictor = Predictor(build_model(tiny_model_config(num_classes=2)), Categories((1, 2), ("red", "green")),
                          _data_config(val_scale), "cpu")
    predictor.forward = RectangleFinder()
    sizes = list(IMAGES)
    # Batches of like shapes (predict_batch's own grouping); the evaluation test below pads.
    results = predictor.predict_batch([_painted(s, IMAGES[s]) for s in sizes], threshold=0.5)
    for size, detections in zip(sizes, results):
        found = dict(zip(detections.names, detections.boxes))
        for name, expected in zip(("red", "green"), IMAGES[size]):
            torch.testing.assert_close(found[name], torch.tensor(expected, dtype=torch.float32), atol=1.0, rtol=0)


@pytest.mark.parametrize("val_scale", [64, 128])
def test_evaluation_boxes_land_on_the_original_pixels(tmp_path, val_scale):
    folder = tmp_path / "images"
    folder.mkdir()
    images, annotations = [], []
    for index, (size, boxes) in enumerate(IMAGES.items(), start=1):
        Image.fromarray(_painted(size, boxes)).save(folder / f"{index}.png")
        images.append({"id": index, "file_name": f"{index}.png", "height": size[0], "width": size[1]})
        for category, (x1, y1, x2, y2) in enumerate(boxes, start=1):
            annotations.append({"id": len(annotations) + 1, "image_id": index, "category_id": category,
                                "bbox": [x1, y1, x2 - x1, y2 - y1]})
    categories = [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}]
    path = write_coco(tmp_path / "annotations.json", images, annotations, categories)
    dataset = CocoDetection(folder, path, val_transforms(_data_config(val_scale)))
    records = predict_dataset(RectangleFinder(), eval_loader(dataset, 3, 0), "cpu", progress=False)
    found = {(r["image_id"], r["category_id"]): r["bbox"] for r in records if r["score"] > 0.5}
    assert len(found) == len(annotations)
    for ann in annotations:
        (x, y, w, h), (gx, gy, gw, gh) = found[(ann["image_id"], ann["category_id"])], ann["bbox"]
        corners, expected = [x, y, x + w, y + h], [gx, gy, gx + gw, gy + gh]
        assert np.abs(np.subtract(corners, expected)).max() <= 1.0, (ann, corners)
