import pickle

import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import box_convert

from detr.config import DataConfig
from detr.data.collate import collate, pad_images
from detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD, prepare_val_image, shared_size_draw, train_transforms, \
    val_transforms


def _sample(height=60, width=80):
    image = tv_tensors.Image(torch.randint(0, 256, (3, height, width), dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[10.0, 5.0, 30.0, 25.0], [40.0, 30.0, 80.0, 60.0]]),
                                     format="XYXY", canvas_size=(height, width))
    return image, {"boxes": boxes, "labels": torch.tensor([0, 1])}


def test_val_resizes_short_side_normalises_and_outputs_cxcywh():
    config = DataConfig(val_scale=120, max_size=1000)
    image, target = val_transforms(config)(*_sample())
    assert image.shape == (3, 120, 160)
    raw = _sample()[0].float() / 255
    expected_mean = ((raw.mean((1, 2)) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))
    torch.testing.assert_close(image.mean((1, 2)), expected_mean, atol=0.05, rtol=0)
    expected = box_convert(torch.tensor([[10.0, 5.0, 30.0, 25.0], [40.0, 30.0, 80.0, 60.0]]), "xyxy", "cxcywh")
    expected /= torch.tensor([80.0, 60.0, 80.0, 60.0])
    torch.testing.assert_close(target["boxes"], expected)
    assert target["size"].tolist() == [120, 160]


@pytest.mark.parametrize("height, width", [(60, 80), (97, 31), (200, 640), (128, 128)])
def test_preparing_an_image_alone_is_the_val_pipelines_image_bit_for_bit(height, width):
    config = DataConfig(val_scale=64, max_size=160)
    image, target = _sample(height, width)
    expected, _ = val_transforms(config)(image, target)
    prepared = prepare_val_image(image.as_subclass(torch.Tensor), config)
    assert type(prepared) is torch.Tensor
    torch.testing.assert_close(prepared, expected.as_subclass(torch.Tensor), rtol=0, atol=0)


def test_val_respects_long_side_cap():
    image, _ = val_transforms(DataConfig(val_scale=120, max_size=140))(*_sample())
    assert max(image.shape[-2:]) <= 140


def test_train_pipeline_keeps_boxes_in_range_and_sizes_in_the_scales():
    config = DataConfig(train_scales=(48, 64), max_size=200, crop_resize_scales=(60,), crop_min=30, crop_max=50)
    transform = train_transforms(config)
    for seed in range(30):
        torch.manual_seed(seed)
        image, target = transform(*_sample())
        assert min(image.shape[-2:]) in (48, 64)
        boxes = target["boxes"]
        assert boxes.shape[1] == 4 and len(boxes) == len(target["labels"])
        xyxy = box_convert(boxes, "cxcywh", "xyxy")
        assert (xyxy >= -1e-6).all() and (xyxy <= 1 + 1e-6).all() and (boxes[:, 2:] > 0).all()


def test_pipelines_pickle_so_that_spawned_loader_workers_get_the_same_transforms():
    # `detr train`'s processes start by spawning, and so do their DataLoader workers, which
    # receive the dataset and its transforms pickled.
    config = DataConfig(train_scales=(48, 64), max_size=200, crop_resize_scales=(60,), crop_min=30, crop_max=50,
                        val_scale=56)
    for make in (train_transforms, val_transforms):
        transform = make(config)
        copy = pickle.loads(pickle.dumps(transform))
        torch.manual_seed(3)
        image, target = transform(*_sample())
        torch.manual_seed(3)
        copied_image, copied_target = copy(*_sample())
        assert torch.equal(image, copied_image)
        assert torch.equal(target["boxes"], copied_target["boxes"])


def test_crop_probability_zero_never_crops_and_one_half_is_the_papers_choice():
    """No crop: every image is the whole image resized (both boxes kept, aspect ratio 4:3).
    0.5: the paper's coin, drawing the same random numbers as an unweighted RandomChoice."""
    config = DataConfig(train_scales=(48, 64), max_size=200, crop_resize_scales=(60,), crop_min=30, crop_max=40,
                        horizontal_flip=False)
    never = train_transforms(DataConfig(**{**config.__dict__, "crop_probability": 0.0}))
    for seed in range(20):
        torch.manual_seed(seed)
        image, target = never(*_sample())
        assert len(target["boxes"]) == 2 and abs(image.shape[-1] * 3 - image.shape[-2] * 4) < 4
    cropped = 0
    for seed in range(40):
        torch.manual_seed(seed)
        image, target = train_transforms(config)(*_sample())
        cropped += abs(image.shape[-1] * 3 - image.shape[-2] * 4) >= 4 or len(target["boxes"]) < 2
    assert 5 < cropped < 35
    with pytest.raises(ValueError, match="crop_probability"):
        train_transforms(DataConfig(crop_probability=1.5))


def test_a_shared_size_draw_gives_images_of_other_shapes_one_short_side_and_leaves_the_rest_their_own():
    """Under one shared seed, images of different shapes, each with its own random stream, come out
    with the same short side (whether cropped or not); their other draws (flip, crop) stay their own,
    so the same image under two item seeds still differs. Without a shared seed nothing changes:
    the pipeline draws exactly what it draws outside the context."""
    config = DataConfig(train_scales=(48, 64, 80, 96), max_size=400, crop_resize_scales=(60,), crop_min=30,
                        crop_max=50)
    transform = train_transforms(config)

    def short_side(seed, shape, item_seed):
        torch.manual_seed(item_seed)
        with shared_size_draw(seed):
            return min(transform(*_sample(*shape))[0].shape[-2:])

    for seed in range(12):
        assert len({short_side(seed, shape, item) for shape, item in [((60, 80), 1), ((90, 70), 2), ((50, 120), 3)]}) == 1
    assert len({short_side(seed, (60, 80), 1) for seed in range(12)}) > 1  # the seed draws the size

    torch.manual_seed(5)
    sample = _sample()
    outputs = []
    for item_seed in range(10):
        torch.manual_seed(item_seed)
        with shared_size_draw(3):
            outputs.append(transform(*sample)[0])
    assert len({min(o.shape[-2:]) for o in outputs}) == 1
    assert any(o.shape != outputs[0].shape or not torch.equal(o, outputs[0]) for o in outputs[1:])

    torch.manual_seed(7)
    sample = _sample()
    torch.manual_seed(8)
    outside = transform(*sample)[0]
    torch.manual_seed(8)
    with shared_size_draw(None):
        inside = transform(*sample)[0]
    assert torch.equal(outside, inside)


def test_collate_pads_and_masks():
    images = [torch.ones(3, 4, 6), torch.ones(3, 5, 3)]
    batch, mask = pad_images(images)
    assert batch.shape == (2, 3, 5, 6)
    assert mask[0, :4, :6].logical_not().all() and mask[0, 4].all()
    assert mask[1, :, 3:].all() and not mask[1, :, :3].any()
    assert batch[1, :, :, 3:].abs().sum() == 0
    images_out, mask_out, targets = collate([(images[0], {"a": 1}), (images[1], {"a": 2})])
    assert images_out.shape == batch.shape and [t["a"] for t in targets] == [1, 2]
