import pytest
import torch
import torch.nn.functional as F

from detr.config import BackboneConfig
from detr.model.backbone import Backbone
from detr.model.stem_pool import StemMaxPool, strided_max_pool


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 6), (111, 121), (112, 120)])
def test_the_strided_pool_is_torchs_max_pool_for_any_sign_and_size(size):
    x = torch.randn(2, 3, *size)
    expected, before = F.max_pool2d(x, 3, 2, 1), x.clone()
    torch.testing.assert_close(strided_max_pool(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(x, before, rtol=0, atol=0)  # it works in place, on its own copy


def test_training_gets_torchs_values_and_gradients_with_ties_among_zeros():
    # After the stem's ReLU most cells are 0: a window of ties must send its gradient where torch's does.
    x = torch.relu(torch.randn(2, 24, 56, 60)).requires_grad_()
    reference = x.detach().clone().requires_grad_()
    pooled, expected = StemMaxPool()(x), F.max_pool2d(reference, 3, 2, 1)
    upstream = torch.randn_like(expected)
    (pooled * upstream).sum().backward()
    (expected * upstream).sum().backward()
    torch.testing.assert_close(pooled, expected, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, reference.grad, rtol=0, atol=0)


def test_inference_and_tracing_give_torchs_values_and_the_trace_keeps_the_plain_pool():
    pool, x = StemMaxPool().eval(), torch.randn(1, 4, 9, 14)
    with torch.no_grad():
        torch.testing.assert_close(pool(x), F.max_pool2d(x, 3, 2, 1), rtol=0, atol=0)
        traced = torch.jit.trace(pool, x)
    assert "max_pool2d" in str(traced.graph)
    torch.testing.assert_close(traced(x), F.max_pool2d(x, 3, 2, 1), rtol=0, atol=0)


@pytest.mark.parametrize("name, width", [("resnet18", 16), ("resnet50", 64)])
def test_resnets_pool_their_stem_with_it(name, width):
    backbone = Backbone(BackboneConfig(name=name, width=width, last_layer="layer2"))
    assert isinstance(backbone.body.maxpool, StemMaxPool)
