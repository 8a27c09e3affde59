import pytest
import torch

from detr.config import BackboneConfig
from detr.model.backbone import Backbone
from detr.model.multi_scale import backbone_stages


@pytest.mark.parametrize("last_layer, levels, expected", [
    ("layer4", 1, ("layer4",)),
    ("layer3", 2, ("layer2", "layer3")),  # the fine level's
    ("layer4", 2, ("layer3", "layer4")),
    ("layer2", 2, ("layer2",)),
])
def test_levels_are_the_last_stages(last_layer, levels, expected):
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
