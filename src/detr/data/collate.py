"""Batching: zero-pad images to the batch's largest size and mark the padding."""

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
