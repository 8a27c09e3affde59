"""The paper's train and val pipelines, composed from torchvision.transforms.v2."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torchvision import tv_tensors
from torchvision.ops import box_convert
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from detr.config import DataConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomSizeCrop(v2.Transform):
    """Crop a random region whose sides are drawn from [min_size, max_size] (capped by the image)."""

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        self.min_size = min_size
        self.max_size = max_size

    def make_params(self, flat_inputs: list) -> dict:
        height, width = v2.query_size(flat_inputs)
        crop_w = int(torch.randint(min(width, self.min_size), min(width, self.max_size) + 1, ()))
        crop_h = int(torch.randint(min(height, self.min_size), min(height, self.max_size) + 1, ()))
        top = int(torch.randint(0, height - crop_h + 1, ()))
        left = int(torch.randint(0, width - crop_w + 1, ()))
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt, params: dict):
        return TF.crop(inpt, **params)


_shared_size_seed: ContextVar[int | None] = ContextVar("shared_size_seed", default=None)


@contextmanager
def shared_size_draw(seed: int | None):
    """Inside, every SharedShortestSize draws its size from `seed` instead of the item's own random
    stream (None: the item's own). Data-parallel processes give the k-th items of a step one seed,
    so the step's batches come out about the same size: a step waits for the slowest process, and
    with sizes drawn per image the two processes of a 2-core CPU ran a step 1.25x slower."""
    token = _shared_size_seed.set(seed)
    try:
        yield
    finally:
        _shared_size_seed.reset(token)


class SharedShortestSize(v2.RandomShortestSize):
    """RandomShortestSize whose draw can be shared between images (`shared_size_draw`)."""

    def make_params(self, flat_inputs: list) -> dict:
        seed = _shared_size_seed.get()
        if seed is None:
            return super().make_params(flat_inputs)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # the CPU's alone, as SeededAugmentation
            return super().make_params(flat_inputs)


class ToNormalizedCxcywh(v2.Transform):
    """Final step: boxes become a plain tensor of cxcywh in [0, 1] of the (transformed) image."""

    def forward(self, image, target):
        boxes = target["boxes"]
        height, width = boxes.canvas_size
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        cxcywh = box_convert(boxes.as_subclass(torch.Tensor).float(), "xyxy", "cxcywh") / scale
        target = {**target, "boxes": cxcywh, "size": torch.tensor([height, width])}
        return image, target


def _labels_of(inputs: tuple) -> torch.Tensor:
    """The labels of an (image, target) pair. A function of the module, not a lambda, so that the
    transforms pickle into DataLoader workers that start by spawning (as in `detr train`'s processes)."""
    return inputs[1]["labels"]


def _finish() -> list:
    return [
        v2.SanitizeBoundingBoxes(min_size=1.0, labels_getter=_labels_of),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ToNormalizedCxcywh(),
    ]


def train_transforms(config: DataConfig) -> v2.Compose:
    resize = SharedShortestSize(list(config.train_scales), max_size=config.max_size)
    crop_then_resize = v2.Compose([
        v2.RandomShortestSize(list(config.crop_resize_scales)),
        RandomSizeCrop(config.crop_min, config.crop_max),
        SharedShortestSize(list(config.train_scales), max_size=config.max_size),
    ])
    steps = [v2.RandomHorizontalFlip()] if config.horizontal_flip else []
    if not 0 <= config.crop_probability <= 1:
        raise ValueError(f"data.crop_probability is between 0 and 1, not {config.crop_probability}")
    steps.append(v2.RandomChoice([resize, crop_then_resize], p=[1 - config.crop_probability,
                                                                config.crop_probability]))
    return v2.Compose(steps + _finish())


def val_transforms(config: DataConfig) -> v2.Compose:
    return v2.Compose([v2.Resize(config.val_scale, max_size=config.max_size)] + _finish())


def prepare_val_image(image: torch.Tensor, config: DataConfig) -> torch.Tensor:
    """`val_transforms`' steps on a uint8 [3, H, W] image alone: resized, then float and
    normalised, by the same kernels. What inference calls per image: 0.38 ms on a `general` val
    image against the pipeline's 1.03, whose box steps and bookkeeping an image alone does not need."""
    resized = TF.resize(image, [config.val_scale], max_size=config.max_size, antialias=True)
    return TF.normalize(TF.to_dtype(resized, torch.float32, scale=True), IMAGENET_MEAN, IMAGENET_STD)


__all__ = ["train_transforms", "val_transforms", "prepare_val_image", "tv_tensors", "IMAGENET_MEAN", "IMAGENET_STD"]
