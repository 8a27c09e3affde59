"""What predict() accepts as an image, and how it refuses the rest (tests of to_uint8_image)."""

import numpy as np
import pytest
import torch
from PIL import Image

from detr.inference import to_uint8_image

GREY = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
RGB = np.stack([GREY, 255 - GREY, GREY // 2], axis=-1)


@pytest.mark.parametrize("image, expected", [
    (GREY, np.stack([GREY] * 3)),  # HxW array
    (GREY[..., None], np.stack([GREY] * 3)),  # HxWx1 array
    (torch.from_numpy(GREY), np.stack([GREY] * 3)),  # HxW tensor
    (torch.from_numpy(GREY)[None], np.stack([GREY] * 3)),  # 1xHxW tensor
    (RGB, RGB.transpose(2, 0, 1)),
    (RGB.astype(np.int64), RGB.transpose(2, 0, 1)),  # wider integers holding 0-255
    (RGB.astype(np.uint16), RGB.transpose(2, 0, 1)),
    (torch.from_numpy(RGB).permute(2, 0, 1).double() / 255, RGB.transpose(2, 0, 1)),  # floats in [0, 1]
    (Image.fromarray(RGB).convert("RGBA"), RGB.transpose(2, 0, 1)),  # alpha dropped
    (Image.fromarray(GREY.astype(np.uint16) * 257), np.stack([GREY] * 3)),  # 16-bit PIL scaled, not clipped
])
def test_accepted_images_become_uint8_rgb(image, expected):
    pixels = to_uint8_image(image)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 12, 20)
    assert torch.equal(pixels, torch.from_numpy(np.ascontiguousarray(expected)))


@pytest.mark.parametrize("image, message", [
    (torch.rand(3, 12, 20) * 255, r"float image must hold finite values in \[0, 1\]: divide 0-255 pixels by 255"),
    (torch.full((3, 4, 4), -0.5), r"in \[0, 1\]"),
    (torch.full((3, 4, 4), float("nan")), "finite values"),
    (RGB.astype(np.uint16) * 257, r"integer pixels must lie in 0-255, not 0..65535: scale 16-bit"),
    (torch.full((3, 4, 4), -1, dtype=torch.int32), "not -1..-1"),
    (np.zeros((4, 4, 3), dtype=bool), "got an array of bool"),
    (torch.zeros(3, 4, 4, dtype=torch.bool), "got a tensor of torch.bool"),
    (np.zeros((4, 4, 4), dtype=np.uint8), r"got shape \(4, 4, 4\)"),  # RGBA array
    (torch.zeros(12, 20, 3, dtype=torch.uint8), r"3xHxW tensor; got shape \(12, 20, 3\)"),  # HWC tensor
    (torch.zeros(3, 0, 5, dtype=torch.uint8), r"got shape \(3, 0, 5\)"),
    ([[0, 1], [2, 3]], "got list"),
])
def test_refused_images_say_what_is_wrong(image, message):
    with pytest.raises(ValueError, match=message) as caught:
        to_uint8_image(image)
    assert "\n" not in str(caught.value)
