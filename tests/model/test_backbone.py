import pytest
import torch

from detr.config import BackboneConfig
from detr.model.backbone import Backbone


@pytest.mark.parametrize(
    "config, channels, stride",
    [
        (BackboneConfig(name="resnet18"), 512, 32),
        (BackboneConfig(name="resnet18", last_layer="layer3"), 256, 16),
        (BackboneConfig(name="resnet34"), 512, 32),
        (BackboneConfig(name="resnet50", dilation=True), 2048, 16),
    ],
)
def test_shapes_and_stride(config, channels, stride):
    backbone = Backbone(config).eval()
    images = torch.randn(2, 3, 64, 96)
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 64:] = True
    features, feature_mask = backbone(images, mask)
    assert backbone.num_channels == channels and backbone.stride == stride
    assert features.shape == (2, channels, 64 // stride, 96 // stride)
    assert feature_mask.shape == (2, 64 // stride, 96 // stride)
    assert feature_mask[1, :, (64 // stride):].all() and not feature_mask[1, :, : 64 // stride].any()


def test_stem_and_layer1_frozen_and_batchnorm_frozen():
    backbone = Backbone(BackboneConfig(name="resnet18"))
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("body.layer2", "body.layer3", "body.layer4")) for n in trainable)
    frozen = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    assert any(n.startswith("body.layer1") for n in frozen) and "body.conv1.weight" in frozen
    # Frozen BatchNorm has no parameters at all, only buffers.
    assert not any("bn" in n for n, _ in backbone.named_parameters())


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backbone"):
        Backbone(BackboneConfig(name="vgg16"))
    with pytest.raises(ValueError, match="bottleneck"):
        Backbone(BackboneConfig(name="resnet18", dilation=True))


def test_channels_last_layout_gives_the_same_features():
    backbone = Backbone(BackboneConfig(name="resnet18", frozen_batchnorm=False)).eval()
    images = torch.randn(2, 3, 64, 96)
    default, _ = backbone(images)
    fast, _ = backbone.use_channels_last()(images)
    assert backbone.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, default, rtol=1e-4, atol=1e-5)
