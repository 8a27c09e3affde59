"""The CNN backbone: image batch + padding mask in, one feature map + its mask out
(or, for the fine level, the maps of the last two stages).

A torchvision ResNet (the paper; a ResNet-18/34 also narrower or with fewer blocks, built
from torchvision's blocks, for a CPU budget) or RegNet (the same four stages of strides 4-32
at a fraction of the FLOPs), all seen as a stem and stages layer1..layer4."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock, conv1x1
from torchvision.ops import FrozenBatchNorm2d

from detr.config import BackboneConfig
from detr.model.padding import ZeroPaddingBeforeConvolutions
from detr.weights.base import WeightsError

_RESNET_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": torchvision.models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
    "resnet101": torchvision.models.ResNet101_Weights.IMAGENET1K_V1,
}
_REGNET_WEIGHTS = {
    "regnet_x_400mf": torchvision.models.RegNet_X_400MF_Weights.IMAGENET1K_V2,
    "regnet_y_400mf": torchvision.models.RegNet_Y_400MF_Weights.IMAGENET1K_V2,
    "regnet_x_800mf": torchvision.models.RegNet_X_800MF_Weights.IMAGENET1K_V2,
}
_WEIGHTS = _RESNET_WEIGHTS | _REGNET_WEIGHTS
_BASIC_BLOCK_LAYERS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}
_TRAINABLE_STAGES = ("layer2", "layer3", "layer4")


def _download_failed(name: str, error: OSError) -> WeightsError:
    url = _WEIGHTS[name].url
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    return WeightsError(f"cannot download the ImageNet weights of {name} from {url} ({error}); to go on, put "
                        f"{url.rsplit('/', 1)[-1]} in {cache}, or train the backbone from scratch with "
                        "--set model.backbone.pretrained=False model.backbone.frozen_batchnorm=False")


class Backbone(nn.Module):
    """A torchvision ResNet or RegNet cut at `last_layer`, stem and layer1 frozen by default.

    `stages` (a tail of layer2..last_layer) are the maps `forward_levels` returns;
    `forward` returns the last one alone, as the single-scale model needs.
    """

    def __init__(self, config: BackboneConfig, stages: tuple[str, ...] = ()) -> None:
        super().__init__()
        if config.name not in _WEIGHTS:
            raise ValueError(f"unknown backbone {config.name!r}; choose one of {sorted(_WEIGHTS)}")
        if config.dilation and config.last_layer != "layer4":
            raise ValueError("dilation (DC5) applies to layer4; set last_layer='layer4'")
        if config.width < 1:
            raise ValueError(f"backbone width must be positive, not {config.width}")
        if config.width != 64 and config.name not in _BASIC_BLOCK_LAYERS:
            raise ValueError(f"only resnet18/34 take a width other than 64, not {config.name}")
        if config.blocks and config.name not in _BASIC_BLOCK_LAYERS:
            raise ValueError(f"only resnet18/34 take other block counts, not {config.name}")
        if config.blocks and (len(config.blocks) != 4 or not all(isinstance(count, int) and count >= 1
                                                                 for count in config.blocks)):
            raise ValueError(f"model.backbone.blocks counts the blocks of layer1..layer4, each a whole number, "
                             f"at least 1, not {config.blocks}")
        if config.stem not in _STEMS:
            raise ValueError(f"unknown backbone stem {config.stem!r}; choose one of {sorted(_STEMS)}")
        if config.stem != "resnet" and config.name not in _BASIC_BLOCK_LAYERS:
            raise ValueError(f"only resnet18/34 take another stem, not {config.name}")
        if _built_here(config) and config.pretrained:
            needed = []
            if config.width != 64:
                needed.append("model.backbone.width=64")
            if config.blocks:
                needed.append("model.backbone.blocks=()")
            if config.stem != "resnet":
                needed.append("model.backbone.stem=resnet")
            raise ValueError(f"ImageNet weights exist at width 64 with {config.name}'s own stem and blocks only: set "
                             f"{' '.join(needed)} for them, or train this backbone from scratch "
                             "(model.backbone.pretrained=False)")
        if config.dilation and config.name not in ("resnet50", "resnet101"):
            raise ValueError(f"dilation (DC5) needs a bottleneck ResNet (resnet50/101), not {config.name}")
        try:
            trunk = _trunk(config)
        except OSError as error:  # urllib's URLError and HTTPError among them: offline, proxy, server
            raise _download_failed(config.name, error) from None
        if not config.train_stem_and_layer1:
            for name, parameter in trunk.named_parameters():
                if not name.startswith(_TRAINABLE_STAGES):
                    parameter.requires_grad_(False)
        available = _TRAINABLE_STAGES[: _TRAINABLE_STAGES.index(config.last_layer) + 1]
        if stages != available[len(available) - len(stages):]:
            raise ValueError(f"backbone stages {stages} must be a tail of {available}")
        return_layers = {stage: stage for stage in stages}
        return_layers[config.last_layer] = "out"
        self.body = IntermediateLayerGetter(trunk, return_layers=return_layers)
        # forward_levels' padded batches; the single-level (paper) path neither probes nor hooks its layers
        self.padding_hooks = ZeroPaddingBeforeConvolutions(self.body) if stages else None
        self.stages = stages
        self.config_last_layer = config.last_layer
        self.channels_last = False
        self.stage_channels: list[int] = [_out_channels(trunk, stage) for stage in stages]
        self.num_channels: int = _out_channels(trunk, config.last_layer)
        self.stride: int = backbone_stride(config)

    def use_channels_last(self, enabled: bool = True) -> Backbone:
        """Run the ResNet in NHWC layout: about 1.3-1.5x faster convolutions on CPU
        (oneDNN) and on GPU tensor cores (BENCHMARKS.md). Results differ from the
        default layout only by fp32 rounding, which a random-weight ResNet-50
        can amplify to ~1e-4 in the logits; the parity tests use the default."""
        self.channels_last = enabled
        self.body.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        return self

    def forward(
        self, images: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.body(images)["out"]
        if mask is None:
            return features, None
        return features, resize_mask(mask, features.shape[-2:])

    def forward_levels(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The maps of `stages`, finest first; with the images' padding mask [B, H, W] (True on
        padding), each image's maps in a padded batch are those of the image alone (padding.py)."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        zeroing = self.padding_hooks.active(mask) if self.padding_hooks is not None else contextlib.nullcontext()
        with zeroing:
            features = self.body(images)
        return [features["out" if stage == self.config_last_layer else stage] for stage in self.stages]


def backbone_stride(config: BackboneConfig) -> int:
    """Input pixels per cell of the last stage's map."""
    return {"layer2": 8, "layer3": 16, "layer4": 16 if config.dilation else 32}[config.last_layer]


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a [B, H, W] padding mask, as the reference does."""
    return F.interpolate(mask[None].float(), size=tuple(size)).to(torch.bool)[0]


def _trunk(config: BackboneConfig) -> nn.Module:
    """The torchvision network whose children run in order and include layer1..layer4 (the
    ResNet itself; a RegNet's stem and trunk stages renamed so), its classifier unused."""
    weights = _WEIGHTS[config.name] if config.pretrained else None
    norm = FrozenBatchNorm2d if config.frozen_batchnorm else nn.BatchNorm2d
    if _built_here(config):
        return narrow_resnet(list(config.blocks or _BASIC_BLOCK_LAYERS[config.name]), config.width, norm,
                             config.stem)
    if config.name in _RESNET_WEIGHTS:
        return getattr(torchvision.models, config.name)(
            weights=weights, replace_stride_with_dilation=[False, False, config.dilation], norm_layer=norm)
    regnet = getattr(torchvision.models, config.name)(weights=weights, norm_layer=norm)
    blocks = regnet.trunk_output
    return nn.Sequential(OrderedDict(stem=regnet.stem, layer1=blocks.block1, layer2=blocks.block2,
                                     layer3=blocks.block3, layer4=blocks.block4))


def _built_here(config: BackboneConfig) -> bool:
    """Whether the ResNet differs from torchvision's (width, blocks or stem): `narrow_resnet` builds
    it, and no ImageNet weights fit it."""
    return config.width != 64 or bool(config.blocks) or config.stem != "resnet"


def narrow_resnet(blocks: list[int], width: int, norm: type[nn.Module], stem: str = "resnet") -> nn.Module:
    """torchvision's BasicBlock ResNet with `width` channels after the stem instead of 64 and
    `blocks` BasicBlocks in layer1..layer4: the same stage strides and initialisation, each
    stage doubling the channels of the one before, after torchvision's stem or `_STEMS`' other."""
    stages, channels = [], width
    for index, count in enumerate(blocks):
        out, stride = width * 2**index, 1 if index == 0 else 2
        downsample = None
        if stride != 1 or channels != out:
            downsample = nn.Sequential(conv1x1(channels, out, stride), norm(out))
        layer = [BasicBlock(channels, out, stride, downsample, norm_layer=norm)]
        layer += [BasicBlock(out, out, norm_layer=norm) for _ in range(count - 1)]
        stages.append((f"layer{index + 1}", nn.Sequential(*layer)))
        channels = out
    trunk = nn.Sequential(OrderedDict(_STEMS[stem](width, norm) + stages))
    for module in trunk.modules():  # torchvision ResNet's initialisation
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return trunk


def _resnet_stem(width: int, norm: type[nn.Module]) -> list[tuple[str, nn.Module]]:
    """torchvision's: a 7x7 stride-2 convolution and a 3x3 stride-2 max-pool."""
    return [("conv1", nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)), ("bn1", norm(width)),
            ("relu", nn.ReLU(inplace=True)), ("maxpool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))]


def _two_convs_stem(width: int, norm: type[nn.Module]) -> list[tuple[str, nn.Module]]:
    """Two 3x3 stride-2 convolutions, to width // 2 and width channels (YOLO's stem): on a CPU
    the 7x7 convolution over the full-resolution map and the max-pool after it took most of a
    small ResNet's stem time, and these take less than half of it."""
    half = max(width // 2, 1)
    return [("conv1", nn.Conv2d(3, half, kernel_size=3, stride=2, padding=1, bias=False)), ("bn1", norm(half)),
            ("relu1", nn.ReLU(inplace=True)),
            ("conv2", nn.Conv2d(half, width, kernel_size=3, stride=2, padding=1, bias=False)), ("bn2", norm(width)),
            ("relu2", nn.ReLU(inplace=True))]


_STEMS = {"resnet": _resnet_stem, "two_convs": _two_convs_stem}


def _out_channels(trunk: nn.Module, stage: str) -> int:
    """A stage's output channels: those of its last convolution (every block ends on one)."""
    convolutions = [m for m in getattr(trunk, stage)[-1].modules() if isinstance(m, nn.Conv2d)]
    return convolutions[-1].out_channels
