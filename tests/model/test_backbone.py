import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from detr.config import BackboneConfig, ExperimentConfig, apply_settings
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


@pytest.mark.parametrize("name, last_layer, channels, stride", [
    ("regnet_x_400mf", "layer3", 160, 16), ("regnet_y_400mf", "layer4", 440, 32), ("regnet_x_800mf", "layer2", 128, 8)])
def test_regnet_stages_are_torchvisions_trunk_stages(name, last_layer, channels, stride):
    """The RegNet backbone's map is torchvision's own trunk output at that stage, same weights."""
    config = BackboneConfig(name=name, last_layer=last_layer, frozen_batchnorm=False)
    backbone = Backbone(config).eval()
    reference = getattr(torchvision.models, name)(weights=None).eval()
    block = f"block{last_layer[-1]}"
    renamed = {"body.stem." + n[len("stem."):] if n.startswith("stem.") else
               "body.layer" + n[len("trunk_output.block"):]: t for n, t in reference.state_dict().items()
               if n.startswith(("stem.", "trunk_output."))}
    ours = backbone.state_dict()
    assert set(ours) <= set(renamed)
    backbone.load_state_dict({n: renamed[n] for n in ours})
    extractor = create_feature_extractor(reference, {f"trunk_output.{block}": "out"})
    images = torch.randn(2, 3, 64, 96)
    features, _ = backbone(images)
    assert backbone.num_channels == channels and backbone.stride == stride
    torch.testing.assert_close(features, extractor(images)["out"])


def test_regnet_freezes_its_stem_and_layer1_and_refuses_dilation():
    backbone = Backbone(BackboneConfig(name="regnet_x_400mf", last_layer="layer3"))
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    frozen = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    assert trainable and all(n.startswith(("body.layer2", "body.layer3")) for n in trainable)
    assert any(n.startswith("body.stem") for n in frozen) and any(n.startswith("body.layer1") for n in frozen)
    with pytest.raises(ValueError, match="bottleneck ResNet"):
        Backbone(BackboneConfig(name="regnet_x_400mf", dilation=True))


def test_a_regnet_default_model_learns_and_keeps_its_backbone_through_a_checkpoint(tmp_path):
    """The default's parts on a RegNet: one training step moves every backbone stage it trains,
    and the weights written in our layout come back as the same model."""
    from detr.data.coco import Categories
    from detr.loss.criterion import SetCriterion
    from detr.model import build_model
    from detr.weights.base import LoadedWeights
    from detr.weights.formats import load_weights, write_weights
    from tests.conftest import tiny_model_config

    config = ExperimentConfig(model=tiny_model_config(
        queries="selected", fine_level=True, decoder_attention="deformable", denoising_groups=1,
        backbone=BackboneConfig(name="regnet_x_400mf", last_layer="layer3", frozen_batchnorm=False,
                                train_stem_and_layer1=True)))
    model = build_model(config.model).train()
    assert model.backbone.stage_channels == [64, 160] and model.backbone.num_channels == 160
    criterion = SetCriterion(3, config.loss, queries_per_group=6, scoring=model.scoring)
    targets = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.3, 0.2]])},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
    out = model(torch.randn(2, 3, 64, 96), targets=targets)
    criterion(out, targets, criterion.normalisers(targets, 6, torch.device("cpu")))["loss"].backward()
    for stage in ("stem", "layer1", "layer2", "layer3"):
        grads = [p.grad for n, p in model.backbone.body.named_parameters() if n.startswith(stage)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), stage

    weights = LoadedWeights(config, model.state_dict(), Categories((1, 2, 3), ("a", "b", "c")))
    back = load_weights(write_weights(weights, tmp_path / "ours", "ours"))
    assert back.config.model.backbone.name == "regnet_x_400mf"
    reloaded = build_model(back.config.model).eval()
    reloaded.load_state_dict(back.state)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images).logits, model.eval()(images).logits)


def test_narrow_resnet_at_width_64_is_torchvisions_resnet():
    """The narrow builder at torchvision's width has torchvision's tensors and, with the same
    weights, computes torchvision's layer3 map: only the channel count changes with width."""
    from detr.model.backbone import narrow_resnet

    reference = torchvision.models.resnet18(weights=None).eval()
    ours = narrow_resnet([2, 2, 2, 2], 64, torch.nn.BatchNorm2d).eval()
    expected = {n: t.shape for n, t in reference.state_dict().items() if not n.startswith("fc.")}
    assert {n: t.shape for n, t in ours.state_dict().items()} == expected
    ours.load_state_dict({n: t for n, t in reference.state_dict().items() if n in expected})
    images = torch.randn(2, 3, 64, 96)
    reference_map = create_feature_extractor(reference, {"layer3": "out"})(images)["out"]
    torch.testing.assert_close(create_feature_extractor(ours, {"layer3": "out"})(images)["out"], reference_map)


@pytest.mark.parametrize("name, blocks", [("resnet18", [2, 2, 2, 2]), ("resnet34", [3, 4, 6, 3])])
def test_a_narrow_resnet_halves_every_stage_and_keeps_the_strides(name, blocks):
    config = BackboneConfig(name=name, width=32, last_layer="layer4", frozen_batchnorm=False,
                            train_stem_and_layer1=True)
    backbone = Backbone(config, stages=("layer2", "layer3", "layer4")).eval()
    assert backbone.stage_channels == [64, 128, 256] and backbone.num_channels == 256 and backbone.stride == 32
    assert [len(getattr(backbone.body, f"layer{i}")) for i in range(1, 5)] == blocks
    levels = backbone.forward_levels(torch.randn(2, 3, 64, 96))
    assert [tuple(m.shape) for m in levels] == [(2, 64, 8, 12), (2, 128, 4, 6), (2, 256, 2, 3)]
    wide = torchvision.models.get_model(name, weights=None)
    convolution_weights = lambda m: sum(p.numel() for n, p in m.named_parameters()  # noqa: E731
                                        if p.dim() == 4)
    # Every convolution but the stem's has both channel counts halved: a quarter of the weights.
    assert convolution_weights(backbone) == pytest.approx(convolution_weights(wide) / 4, rel=0.01)


@pytest.mark.parametrize("height, width", [(64, 96), (75, 98), (112, 66)])
def test_the_two_convolution_stem_gives_every_stage_the_resnet_stems_size_and_channels(height, width):
    """Two 3x3 stride-2 convolutions in place of the 7x7 convolution and max-pool: the same
    stride-4 map into layer1 at any input size (odd ones too), so every later stage and the
    padding masks are unchanged; its own layers are the convolutions it says."""
    base = dict(name="resnet18", width=24, blocks=(1, 1, 1, 1), last_layer="layer3", frozen_batchnorm=False,
                train_stem_and_layer1=True)
    torch.manual_seed(0)
    resnet = Backbone(BackboneConfig(**base), stages=("layer2", "layer3")).eval()
    convs = Backbone(BackboneConfig(**base, stem="two_convs"), stages=("layer2", "layer3")).eval()
    images = torch.randn(2, 3, height, width)
    shapes = lambda backbone: [tuple(m.shape) for m in backbone.forward_levels(images)]  # noqa: E731
    assert shapes(convs) == shapes(resnet)
    assert convs.stage_channels == resnet.stage_channels and convs.stride == resnet.stride == 16
    stem = [(n, type(m).__name__) for n, m in convs.body.named_children() if not n.startswith("layer")]
    assert stem == [("conv1", "Conv2d"), ("bn1", "BatchNorm2d"), ("relu1", "ReLU"),
                    ("conv2", "Conv2d"), ("bn2", "BatchNorm2d"), ("relu2", "ReLU")]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride)
            for m in (convs.body.conv1, convs.body.conv2)] == [(3, 12, (3, 3), (2, 2)), (12, 24, (3, 3), (2, 2))]
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in convs.modules())


def test_another_stem_is_refused_where_it_cannot_be_built():
    with pytest.raises(ValueError, match="only resnet18/34 take another stem"):
        Backbone(BackboneConfig(name="resnet50", stem="two_convs"))
    with pytest.raises(ValueError, match="set model.backbone.stem=resnet for them"):
        Backbone(BackboneConfig(name="resnet18", stem="two_convs", pretrained=True))
    with pytest.raises(ValueError, match="unknown backbone stem 'patches'"):
        Backbone(BackboneConfig(name="resnet18", stem="patches", pretrained=False))


def test_a_width_other_than_64_is_refused_where_it_cannot_be_built():
    with pytest.raises(ValueError, match="only resnet18/34 take a width"):
        Backbone(BackboneConfig(name="resnet50", width=32))
    with pytest.raises(ValueError, match="only resnet18/34 take a width"):
        Backbone(BackboneConfig(name="regnet_x_400mf", width=32))
    with pytest.raises(ValueError, match="ImageNet weights exist at width 64 with resnet18's own stem and blocks "
                                         "only: set model.backbone.width=64 for them"):
        Backbone(BackboneConfig(name="resnet18", width=32, pretrained=True))
    with pytest.raises(ValueError, match="must be positive"):
        Backbone(BackboneConfig(name="resnet18", width=0))


def test_block_counts_build_those_stages_with_the_same_strides_and_channels():
    config = BackboneConfig(name="resnet18", width=24, blocks=(1, 2, 1, 3), last_layer="layer4",
                            frozen_batchnorm=False, train_stem_and_layer1=True)
    backbone = Backbone(config, stages=("layer2", "layer3", "layer4")).eval()
    assert [len(getattr(backbone.body, f"layer{i}")) for i in range(1, 5)] == [1, 2, 1, 3]
    levels = backbone.forward_levels(torch.randn(2, 3, 64, 96))
    assert [tuple(m.shape) for m in levels] == [(2, 48, 8, 12), (2, 96, 4, 6), (2, 192, 2, 3)]


def test_block_counts_reach_the_saved_config_and_back():
    config = apply_settings(ExperimentConfig(), ["model.backbone.blocks=[1,1,1,1]"])
    assert config.model.backbone.blocks == (1, 1, 1, 1)
    assert ExperimentConfig.from_dict(config.to_dict()).model.backbone.blocks == (1, 1, 1, 1)


BAD_COUNTS = "blocks of layer1..layer4, each a whole number, at least 1"


@pytest.mark.parametrize("config, message", [
    (BackboneConfig(name="resnet50", blocks=(1, 1, 1, 1)), "only resnet18/34 take other block counts"),
    (BackboneConfig(name="resnet18", width=24, blocks=(1, 1, 1)), BAD_COUNTS),
    (BackboneConfig(name="resnet18", width=24, blocks=(1, 0, 1, 1)), BAD_COUNTS),
    (BackboneConfig(name="resnet18", width=24, blocks=(1, 1.5, 1, 1)), BAD_COUNTS),
    (BackboneConfig(name="resnet18", blocks=(1, 1, 1, 1), pretrained=True),
     r"own stem and blocks only: set model.backbone.blocks=\(\) for them"),
    (BackboneConfig(name="resnet18", width=24, blocks=(1, 1, 1, 1), pretrained=True),
     r"own stem and blocks only: set model.backbone.width=64 model.backbone.blocks=\(\) for them"),
])
def test_block_counts_are_refused_where_they_cannot_be_built(config, message):
    with pytest.raises(ValueError, match=message):
        Backbone(config)
