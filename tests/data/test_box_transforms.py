"""The training pipeline's geometry, one step at a time: the random crop's range, what it does
to boxes, which boxes survive, flips, the long-side cap, and padding. Expected boxes are
computed here by hand from the crop window, not by the transforms under test."""

import pytest
import torch
from torchvision import tv_tensors

from detr.config import DataConfig
from detr.data.collate import pad_images
from detr.data.transforms import RandomSizeCrop, train_transforms, val_transforms


def _sample(height=60, width=80, boxes=((10.0, 5.0, 30.0, 25.0), (40.0, 30.0, 80.0, 60.0))):
    image = tv_tensors.Image(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes(torch.tensor(boxes), format="XYXY", canvas_size=(height, width))
    return image, {"boxes": boxes, "labels": torch.arange(len(boxes))}


def test_random_crop_draws_every_allowed_size_and_position_and_nothing_else():
    crop = RandomSizeCrop(8, 12)
    image = torch.zeros(3, 20, 30)
    heights, widths, touches = set(), set(), set()
    for seed in range(600):
        torch.manual_seed(seed)
        p = crop.make_params([image])
        assert 0 <= p["top"] <= 20 - p["height"] and 0 <= p["left"] <= 30 - p["width"]
        heights.add(p["height"])
        widths.add(p["width"])
        touches |= {name for name, touching in (("top", p["top"] == 0), ("bottom", p["top"] + p["height"] == 20),
                                                ("left", p["left"] == 0), ("right", p["left"] + p["width"] == 30))
                    if touching}
    assert heights == widths == set(range(8, 13))  # both ends of [min_size, max_size], nothing outside
    assert touches == {"top", "bottom", "left", "right"}  # the window reaches every edge


def test_random_crop_sides_are_capped_by_a_small_image():
    crop = RandomSizeCrop(12, 15)
    for seed in range(30):
        torch.manual_seed(seed)
        params = crop.make_params([torch.zeros(3, 10, 40)])
        assert params["height"] == 10 and params["top"] == 0 and 12 <= params["width"] <= 15


def test_random_crop_cuts_the_image_and_moves_and_clips_the_boxes():
    crop = RandomSizeCrop(20, 40)
    for seed in range(10):
        image, target = _sample()
        torch.manual_seed(seed)
        p = crop.make_params([image])
        torch.manual_seed(seed)
        out_image, out_target = crop(image, target)
        top, left, height, width = p["top"], p["left"], p["height"], p["width"]
        assert torch.equal(out_image, image[:, top:top + height, left:left + width])
        expected = target["boxes"].as_subclass(torch.Tensor) - torch.tensor([left, top, left, top])
        expected[:, 0::2] = expected[:, 0::2].clamp(0, width)
        expected[:, 1::2] = expected[:, 1::2].clamp(0, height)
        torch.testing.assert_close(out_target["boxes"].as_subclass(torch.Tensor), expected)
        assert tuple(out_target["boxes"].canvas_size) == (height, width)


def test_boxes_narrower_than_one_pixel_are_dropped_with_their_labels():
    """val_scale equal to the short side: no resize, so the sizes are the drawn ones."""
    image, target = _sample(boxes=((10.0, 5.0, 11.5, 25.0), (40.0, 30.0, 40.5, 60.0), (0.0, 0.0, 5.0, 1.2)))
    _, out = val_transforms(DataConfig(val_scale=60, max_size=1000))(image, target)
    assert out["labels"].tolist() == [0, 2]
    torch.testing.assert_close(out["boxes"][:, 2:], torch.tensor([[1.5 / 80, 20 / 60], [5 / 80, 1.2 / 60]]))


def _is_whole_image(image, target) -> bool:
    return len(target["boxes"]) == 2 and abs(image.shape[-1] * 3 - image.shape[-2] * 4) < 4


def test_crop_probability_one_always_crops():
    config = DataConfig(train_scales=(48,), max_size=200, crop_resize_scales=(60,), crop_min=30, crop_max=40,
                        crop_probability=1.0, horizontal_flip=False)
    transform = train_transforms(config)
    for seed in range(20):
        torch.manual_seed(seed)
        image, target = transform(*_sample())
        assert not _is_whole_image(image, target) and min(image.shape[-2:]) == 48


@pytest.mark.parametrize("probability", [-0.1, 1.01])
def test_crop_probability_outside_zero_one_is_refused_with_its_value(probability):
    with pytest.raises(ValueError, match=f"data.crop_probability is between 0 and 1, not {probability}"):
        train_transforms(DataConfig(crop_probability=probability))


@pytest.mark.parametrize("crop_probability", [0.0, 1.0])
def test_train_pipeline_caps_the_long_side(crop_probability):
    """Resizing the short side of a 60 x 90 image (or of a crop window 20..90 pixels a side)
    to 64 would make the long side longer than 70: it is capped there instead."""
    config = DataConfig(train_scales=(64,), max_size=70, crop_resize_scales=(60,), crop_min=20, crop_max=90,
                        crop_probability=crop_probability)
    transform = train_transforms(config)
    long_sides = []
    for seed in range(10):
        torch.manual_seed(seed)
        image, _ = transform(*_sample(60, 90))
        long_sides.append(max(image.shape[-2:]))
    assert max(long_sides) == 70


@pytest.mark.parametrize("flip", [False, True])
def test_horizontal_flip_mirrors_boxes_only_when_enabled(flip):
    """Resizing keeps normalised centres; a flip sends cx to 1 - cx."""
    config = DataConfig(train_scales=(48,), max_size=200, crop_probability=0.0, horizontal_flip=flip)
    transform = train_transforms(config)
    centres = torch.tensor([20.0, 60.0]) / 80
    flipped = 0
    for seed in range(20):
        torch.manual_seed(seed)
        _, target = transform(*_sample())
        cx = target["boxes"][:, 0]
        if torch.allclose(cx, 1 - centres, atol=1e-5):
            flipped += 1
        else:
            torch.testing.assert_close(cx, centres, atol=1e-5, rtol=0)
    assert (0 < flipped < 20) if flip else flipped == 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.uint8])
def test_padding_keeps_the_images_dtype_and_values(dtype):
    images = [torch.full((3, 4, 6), 7, dtype=dtype), torch.full((3, 5, 3), 9, dtype=dtype)]
    batch, mask = pad_images(images)
    assert batch.dtype == dtype and batch.shape == (2, 3, 5, 6) and mask.dtype == torch.bool
    assert (batch[0, :, :4, :] == 7).all() and (batch[0, :, 4:, :] == 0).all()
    assert (batch[1, :, :, :3] == 9).all() and (batch[1, :, :, 3:] == 0).all()


def test_the_largest_image_has_no_padding():
    batch, mask = pad_images([torch.rand(1, 5, 6), torch.rand(1, 2, 2)])
    assert batch.shape == (2, 1, 5, 6) and not mask[0].any() and mask[1].sum() == 5 * 6 - 2 * 2


def test_a_batch_of_one_image_is_itself_with_no_padding():
    """Prediction and evaluation often batch a single image."""
    image = torch.rand(3, 4, 7)
    batch, mask = pad_images([image])
    assert batch.shape == (1, 3, 4, 7) and torch.equal(batch[0], image) and not mask.any()
