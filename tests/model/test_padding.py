"""A padded batch computes, for each image, what that image computes alone (model/padding.py)."""

import copy

import torch
from torch import nn

from detr.data.collate import pad_images
from detr.model import build_model
from detr.model.padding import image_cells, masked_group_norm
from tests.fixtures.make_preset_fixtures import tiny_config


def _with_live_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Eval mode with BatchNorm statistics and GroupNorm affines far from their defaults, so that
    a padded cell that leaked into an image's features would show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.bias.normal_(0, 0.5, generator=generator)
            if isinstance(module, nn.GroupNorm):
                module.bias.normal_(0, 0.5, generator=generator)
    return model.eval()


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(3, 75, 98, generator=generator), torch.randn(3, 112, 66, generator=generator),
            torch.randn(3, 64, 64, generator=generator)]


def _assert_each_image_alone(model: nn.Module) -> None:
    images = _images()
    batch, mask = pad_images(images)
    assert mask.any(dim=(1, 2)).all()  # every image is padded in the batch
    with torch.no_grad():
        together = model(batch, mask)
        for index, image in enumerate(images):
            alone = model(*pad_images([image]))
            torch.testing.assert_close(together.logits[index], alone.logits[0], rtol=0, atol=2e-5)
            torch.testing.assert_close(together.boxes[index], alone.boxes[0], rtol=0, atol=2e-6)


def test_the_default_gives_each_image_of_a_padded_batch_its_own_outputs():
    torch.manual_seed(0)
    _assert_each_image_alone(_with_live_statistics(build_model(tiny_config("fast_fine").model)))


def test_torchvisions_stem_and_two_blocks_a_stage_give_each_image_of_a_padded_batch_its_own_outputs():
    """The default with the ResNet's 7x7 convolution and max-pool, and ResNet-18's blocks."""
    torch.manual_seed(0)
    config = tiny_config("fast_fine").model
    assert config.backbone.stem == "two_convs"  # the default's own, tested above
    config.backbone.stem, config.backbone.blocks = "resnet", (2, 2, 2, 2)
    _assert_each_image_alone(_with_live_statistics(build_model(config)))


def test_a_copy_of_the_model_zeroes_its_own_padding():
    """The EMA weights are a deep copy: its convolutions' hooks must read the copy's mask."""
    torch.manual_seed(0)
    model = _with_live_statistics(build_model(tiny_config("fast_fine").model))
    _assert_each_image_alone(copy.deepcopy(model))


def test_image_cells_are_the_maps_of_the_image_alone():
    """ResNet's stride-2 convolutions turn n rows into ceil(n / 2): an image of 192 rows has 96,
    48, 24 and 12 at strides 2 to 16, whatever the batch pads it to, in a map of the padded
    batch's ceil(268 / stride) rows."""
    mask = torch.ones(1, 268, 201, dtype=torch.bool)
    mask[0, :192, :150] = False
    size = (268, 201)
    for halvings in (1, 2, 3, 4):
        size = tuple(-(-side // 2) for side in size)
        cells = image_cells(mask, halvings)[0, 0]
        assert cells.shape == size
        stride = 2 ** halvings
        assert cells.sum(0).max() == -(-192 // stride) and cells.sum(1).max() == -(-150 // stride)
        rows, cols = cells.any(1), cells.any(0)
        assert torch.equal(cells, rows[:, None] & cols[None, :])  # a rectangle, from the top left
        assert rows[: int(rows.sum())].all() and cols[: int(cols.sum())].all()


def test_each_hooked_layer_knows_its_input_stride():
    """Read once at construction from a probe forward: the stem's first convolution at the
    image's resolution, the max-pool after it (torchvision's stem) or the second convolution (two
    3x3 convolutions) at stride 2, layer2's first convolution at stride 4."""
    config = tiny_config("fast_fine").model
    config.backbone.stem, config.backbone.blocks = "resnet", (2, 2, 2, 2)
    model = build_model(config)
    body = model.backbone.body
    halvings = model.backbone.padding_hooks.halvings
    assert halvings[body.conv1] == 0 and halvings[body.maxpool] == 1
    assert halvings[body.layer2[0].conv1] == 2 and halvings[body.layer2[0].conv2] == 3
    assert halvings[body.layer3[0].downsample[0]] == 3 and halvings[body.layer3[1].conv2] == 4

    default = build_model(tiny_config("fast_fine").model)  # two 3x3 convolutions, one block a stage
    body = default.backbone.body
    halvings = default.backbone.padding_hooks.halvings
    assert halvings[body.conv1] == 0 and halvings[body.conv2] == 1
    assert halvings[body.layer2[0].conv1] == 2 and halvings[body.layer3[0].conv2] == 4


def test_masked_group_norm_is_group_norm_over_the_image_alone():
    norm = nn.GroupNorm(4, 8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    image = torch.randn(1, 8, 5, 7)
    padded = torch.randn(1, 8, 9, 10) * 3  # what the padding holds does not matter
    padded[..., :5, :7] = image
    keep = torch.zeros(1, 1, 9, 10)
    keep[..., :5, :7] = 1
    torch.testing.assert_close(masked_group_norm(norm, padded, keep)[..., :5, :7], norm(image))


def test_inference_zeroes_the_padding_in_place_without_touching_the_callers_images():
    """Without autograd the hooks zero activations in place (no map allocated a layer): the
    outputs are those of the allocating path, and the caller's batch, even one already in the
    backbone's channels-last layout, is left as it was."""
    torch.manual_seed(0)
    model = _with_live_statistics(build_model(tiny_config("fast_fine").model))
    model.backbone.use_channels_last()
    batch, mask = pad_images(_images())
    batch = batch.masked_fill(mask[:, None], 3.0).contiguous(memory_format=torch.channels_last)  # padding not 0
    before = batch.clone()
    with torch.enable_grad():
        allocating = model(batch, mask)
    with torch.no_grad():
        in_place = model(batch, mask)
    torch.testing.assert_close(batch, before, rtol=0, atol=0)
    torch.testing.assert_close(in_place.logits, allocating.logits.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(in_place.boxes, allocating.boxes.detach(), rtol=0, atol=1e-6)
