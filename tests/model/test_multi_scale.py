import pytest
import torch

from detr.config import BackboneConfig
from detr.model.backbone import Backbone
from detr.model.deformable_encoder import encoder_reference_points
from detr.model.multi_scale import Levels, MultiScaleInput, backbone_stages
from detr.model.position_encoding import SinePositionEncoding


@pytest.mark.parametrize("last_layer, levels, expected", [
    ("layer4", 4, (("layer2", "layer3", "layer4"), 1)),  # Deformable DETR
    ("layer4", 1, (("layer4",), 0)),
    ("layer3", 2, (("layer2", "layer3"), 0)),
    ("layer3", 4, (("layer2", "layer3"), 2)),
])
def test_levels_are_the_last_stages_then_extra_convs(last_layer, levels, expected):
    assert backbone_stages(last_layer, levels) == expected


def test_the_single_level_path_is_unchanged_by_asking_for_stages():
    config = BackboneConfig(name="resnet18", last_layer="layer3")
    single, multi = Backbone(config).eval(), Backbone(config, ("layer2", "layer3")).eval()
    multi.load_state_dict(single.state_dict())
    images = torch.randn(1, 3, 64, 64)
    features, _ = single(images)
    levels = multi.forward_levels(images)
    assert [tuple(f.shape) for f in levels] == [(1, 128, 8, 8), (1, 256, 4, 4)]
    assert multi.stage_channels == [128, 256]
    assert torch.equal(levels[-1], features)
    assert torch.equal(multi(images)[0], features)


def test_levels_shapes_start_index_masks_and_valid_ratios():
    dim = 32
    layer = MultiScaleInput([8, 16], dim, extra_levels=1)
    features = [torch.randn(2, 8, 8, 16), torch.randn(2, 16, 4, 8)]
    mask = torch.zeros(2, 64, 128, dtype=torch.bool)
    mask[1, :, 64:] = True  # image 1 is 32x64
    mask[1, 32:, :] = True
    src, pos, padding, levels = layer(features, mask, SinePositionEncoding(dim))
    assert levels.shapes == [(8, 16), (4, 8), (2, 4)]
    assert levels.start_index.tolist() == [0, 128, 160]
    assert src.shape == pos.shape == (2, 168, dim) and padding.shape == (2, 168)
    torch.testing.assert_close(levels.valid_ratios[0], torch.ones(3, 2))
    torch.testing.assert_close(levels.valid_ratios[1], torch.tensor([[0.5, 0.5]] * 3))
    assert levels.masks[2][1].tolist() == [[False, False, True, True], [True] * 4]
    assert torch.equal(padding[1, 160:], levels.masks[2][1].flatten())
    # Each level's positions: the sine encoding of its own mask plus its level embedding.
    encoding = SinePositionEncoding(dim)
    for level, ((height, width), start) in enumerate(zip(levels.shapes, levels.start_index.tolist())):
        expected = encoding(torch.zeros(2, dim, height, width), levels.masks[level]).flatten(2).transpose(1, 2)
        torch.testing.assert_close(pos[:, start:start + height * width], expected + layer.level_embed[level])

def test_a_token_points_at_the_same_image_place_on_every_level():
    masks = [torch.zeros(1, 2, 4, dtype=torch.bool), torch.zeros(1, 1, 2, dtype=torch.bool)]
    masks[0][0, :, 2:] = True
    masks[1][0, :, 1:] = True
    ratios = torch.tensor([[[0.5, 1.0], [0.5, 1.0]]])
    levels = Levels([(2, 4), (1, 2)], torch.tensor([0, 8]), masks, ratios)
    points = encoder_reference_points(levels)
    assert points.shape == (1, 10, 2, 2)
    # Level 0's cell (row 0, column 1): centre x = 1.5 of 2 unpadded cells, y = 0.5 of 2 rows.
    torch.testing.assert_close(points[0, 1], torch.tensor([[0.375, 0.25], [0.375, 0.25]]))
    # Level 1's only unpadded cell: the middle of the image, a quarter of each padded map's width.
    torch.testing.assert_close(points[0, 8], torch.tensor([[0.25, 0.5], [0.25, 0.5]]))
