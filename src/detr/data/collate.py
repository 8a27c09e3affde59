"""Batching: zero-pad images to the batch's largest size and mark the padding, or, in training,
crop them to the batch's smallest (`crop_collate`); at inference, which images share a batch
(`batches_by_size`)."""

from __future__ import annotations

import torch
from torchvision.ops import box_convert


def pad_images(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[3, h_i, w_i] tensors -> images [B, 3, H, W] zero-padded, mask [B, H, W] True on padding."""
    height = max(i.shape[-2] for i in images)
    width = max(i.shape[-1] for i in images)
    batch = torch.zeros(len(images), images[0].shape[0], height, width, dtype=images[0].dtype)
    mask = torch.ones(len(images), height, width, dtype=torch.bool)
    for i, image in enumerate(images):
        h, w = image.shape[-2:]
        batch[i, :, :h, :w] = image
        mask[i, :h, :w] = False
    return batch, mask


def collate(items: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    images, targets = zip(*items)
    batch, mask = pad_images([i.as_subclass(torch.Tensor) for i in images])
    return batch, mask, list(targets)


def crop_to_window(image: torch.Tensor, target: dict, height: int, width: int) -> tuple[torch.Tensor, dict]:
    """A random height x width window of `image` ([3, h, w], h >= height, w >= width) and its
    target: boxes (normalised cxcywh of the image) clipped to the window, those left under a
    pixel in either side dropped with their labels."""
    if image.shape[-2:] == (height, width):
        return image, {**target, "size": torch.tensor([height, width])}
    top = int(torch.randint(image.shape[-2] - height + 1, ()))
    left = int(torch.randint(image.shape[-1] - width + 1, ()))
    scale = torch.tensor([image.shape[-1], image.shape[-2]] * 2, dtype=torch.float32)
    corners = box_convert(target["boxes"].float(), "cxcywh", "xyxy") * scale - torch.tensor([left, top] * 2)
    corners = torch.minimum(corners.clamp(min=0), torch.tensor([width, height] * 2, dtype=torch.float32))
    keep = ((corners[:, 2] - corners[:, 0]) >= 1) & ((corners[:, 3] - corners[:, 1]) >= 1)
    boxes = box_convert(corners[keep], "xyxy", "cxcywh") / torch.tensor([width, height] * 2, dtype=torch.float32)
    cropped = {**target, "boxes": boxes, "labels": target["labels"][keep], "size": torch.tensor([height, width])}
    return image[:, top:top + height, left:left + width], cropped


def crop_collate(items: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, None, list[dict]]:
    """Training batches without padding: each image cropped at random to the batch's smallest
    height and width (no resampling, no distortion). The mask is None: no padding. The default
    in batches of 2, 10 minutes, two processes (2 AMD EPYC vCPUs): 1.41x, 1.30x and 1.20x the
    images a second of padded batches on general, dense and the built-in set, AP -0.015, -0.007
    and +0.018 (one run each); an image then shows 0.80-0.87 of its pixels and 95-99% of its
    objects. Not the default: the same AP from smaller images."""
    images, targets = zip(*items)
    images = [i.as_subclass(torch.Tensor) for i in images]
    height, width = min(i.shape[-2] for i in images), min(i.shape[-1] for i in images)
    cropped = [crop_to_window(image, target, height, width) for image, target in zip(images, targets)]
    return torch.stack([image for image, _ in cropped]), None, [target for _, target in cropped]


TRAIN_COLLATES = {"pad": collate, "crop": crop_collate}  # by DataConfig.train_batch_shape


# A padded batch computes every image at the batch's largest height and width. Cutting it in two,
# each part padded to its own size, costs a second call: a cut is taken when it saves at least this
# share of one image's pixels (the parts' mean). Eight val images of `general` (160-256 px, as many
# tall as wide) became a wide and a tall batch of 4, and `dense`'s a batch of 5 and one of 3: an
# image took 0.84-1.0x (general; 0.93 between separate processes) and 0.81-0.88x (dense) the time
# of one padded batch in PyTorch, 0.95-0.98x through onnxruntime (2 AMD EPYC vCPUs). Cutting at a
# quarter or a tenth of an image made 3-5 batches and was slower on both sets and both paths.
CUT_SAVING = 0.5


def batches_by_size(shapes: list[tuple[int, int]]) -> list[list[int]]:
    """The indices of images of (height, width) `shapes` in batches that pad less than one batch:
    ordered by aspect ratio, cut where the two parts' padded pixels fall most, while a cut saves
    CUT_SAVING of an image. Every index appears once; each batch lists its indices in order."""
    if not shapes:
        return []
    order = sorted(range(len(shapes)), key=lambda i: shapes[i][0] / shapes[i][1])
    return sorted(sorted(batch) for batch in _cut(order, shapes))


def _padded_pixels(indices: list[int], shapes: list[tuple[int, int]]) -> int:
    return len(indices) * max(shapes[i][0] for i in indices) * max(shapes[i][1] for i in indices)


def _cut(indices: list[int], shapes: list[tuple[int, int]]) -> list[list[int]]:
    if len(indices) < 2:
        return [indices]
    def parts(k: int) -> int:
        return _padded_pixels(indices[:k], shapes) + _padded_pixels(indices[k:], shapes)
    cut = min(range(1, len(indices)), key=parts)
    image = sum(shapes[i][0] * shapes[i][1] for i in indices) / len(indices)
    if _padded_pixels(indices, shapes) - parts(cut) < CUT_SAVING * image:
        return [indices]
    return _cut(indices[:cut], shapes) + _cut(indices[cut:], shapes)
