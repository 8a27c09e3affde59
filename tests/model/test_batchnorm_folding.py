import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detr.config import BackboneConfig
from detr.model import build_model
from detr.model.batchnorm_folding import folded_copy
from tests.conftest import tiny_model_config

NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)


def _with_trained_statistics(model: nn.Module) -> nn.Module:
    """Every BatchNorm given statistics and an affine map far from the identity, as training leaves them."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, NORMS):
                count = module.running_mean.numel()
                module.running_mean.copy_(torch.randn(count, generator=generator))
                module.running_var.copy_(torch.rand(count, generator=generator) * 2 + 0.1)
                module.weight.copy_(torch.randn(count, generator=generator))
                module.bias.copy_(torch.randn(count, generator=generator))
    return model.eval()


@pytest.mark.parametrize("backbone", [
    BackboneConfig(name="resnet18", last_layer="layer3", frozen_batchnorm=False, width=16),  # the default's kind
    BackboneConfig(name="resnet18", last_layer="layer3", frozen_batchnorm=False, width=16, stem="two_convs"),
    BackboneConfig(name="resnet18", last_layer="layer3"),  # torchvision's ResNet, FrozenBatchNorm2d (the paper's)
    BackboneConfig(name="resnet50", last_layer="layer2", dilation=False),  # bottleneck blocks, downsample
    BackboneConfig(name="regnet_x_400mf", last_layer="layer3", frozen_batchnorm=False),
])
def test_folded_model_gives_the_same_outputs_without_batchnorm(backbone):
    model = _with_trained_statistics(build_model(tiny_model_config(backbone=backbone)))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    folded = folded_copy(model)
    assert not any(isinstance(m, NORMS) for m in folded.modules())
    images, mask = torch.randn(2, 3, 64, 80), torch.zeros(2, 64, 80, dtype=torch.bool)
    mask[1, :, 56:] = True
    with torch.no_grad():
        expected, got = model(images, mask), folded(images, mask)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.boxes, expected.boxes, rtol=1e-4, atol=1e-4)
    # The caller's model is untouched: its BatchNorms and every tensor as they were.
    assert any(isinstance(m, NORMS) for m in model.modules())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_a_batchnorm_that_does_not_follow_a_convolution_is_kept():
    model = nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (4, 1, 1)), nn.BatchNorm2d(4)).eval()
    folded = folded_copy(model)
    assert isinstance(folded[2], nn.BatchNorm2d)


def test_a_batchnorm_without_running_statistics_is_kept():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)).eval()
    folded = folded_copy(model)
    assert isinstance(folded[1], nn.BatchNorm2d)
    images = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(folded(images), model(images))
