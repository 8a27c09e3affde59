"""Batching: zero-pad images to the batch's largest size and mark the padding; at inference,
which images share a batch (`batches_by_size`)."""

from __future__ import annotations

import torch


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
