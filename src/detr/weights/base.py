"""What every weights layout shares: the error, the loaded result, and the
ModelConfig read off a state dict in this project's names.

Everything the tensors show is taken from them (backbone depth, widths,
layer counts, classes, queries, pre-norm, learned positions). What they
cannot show (attention heads, dilation, dropout, auxiliary losses) comes from
the caller's hints, which default to the paper's values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import torch

from detr.config import BackboneConfig, ExperimentConfig, ModelConfig
from detr.data.coco import Categories
from detr.engine.checkpoint import CheckpointError

# (bottleneck?, blocks in layer3) -> torchvision ResNet
_RESNETS = {(False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50", (True, 23): "resnet101"}


class WeightsError(CheckpointError):
    """Weights that cannot be read or used, worded to say which source and why."""


class LoadedWeights(NamedTuple):
    """Weights in any layout, read into this project's terms."""

    config: ExperimentConfig
    state: dict[str, torch.Tensor]  # this project's tensor names
    categories: Categories


@dataclass
class Hints:
    """Settings the tensors do not show; None means the paper's default."""

    num_heads: int | None = None
    dilation: bool | None = None
    dropout: float | None = None
    aux_loss: bool | None = None


@dataclass(frozen=True)
class NameMap:
    """How another layout names our tensors, as (ours, theirs) pairs, read either way by `rename`."""

    prefixes: list[tuple[str, str]]  # outside the transformer layers
    layers: dict[str, list[tuple[str, str]]]  # inside one "encoder" or "decoder" layer
    layer_name: tuple[str, str]  # regex of a layer tensor's name: groups (kind, index, rest)
    layer_prefix: tuple[str, str]  # a layer's name prefix, formatted with (kind, index)

    def rename(self, name: str, to_theirs: bool) -> str | None:
        """`name` in the other naming, or None when it has no counterpart there."""
        src, dst = (0, 1) if to_theirs else (1, 0)
        layer = re.match(self.layer_name[src], name)
        if layer:
            kind, index, rest = layer.groups()
            for pair in self.layers[kind]:
                if rest.startswith(pair[src]):
                    return self.layer_prefix[dst].format(kind, index) + pair[dst] + rest[len(pair[src]):]
            return None
        for pair in self.prefixes:
            if name.startswith(pair[src]):
                return pair[dst] + name[len(pair[src]):]
        return None


def layer_count(names, pattern: str) -> int:
    """1 + the largest layer index that `pattern`'s first group finds in the tensor names (0: none)."""
    found = {int(m.group(1)) for name in names if (m := re.match(pattern, name))}
    return max(found) + 1 if found else 0


def _require(state: dict[str, torch.Tensor], name: str, source: str) -> torch.Tensor:
    if name not in state:
        raise WeightsError(f"{source}: no tensor {name!r}, so these are not complete DETR weights")
    return state[name]


def infer_backbone(state: dict[str, torch.Tensor], source: str, dilation: bool = False) -> BackboneConfig:
    if "backbone.body.stem.0.weight" in state:
        raise WeightsError(f"{source}: bare weights of a RegNet-backbone DETR, whose layout the tensors do not "
                           "tell; load the training checkpoint or our layout, which carry the config")
    bottleneck = "backbone.body.layer1.0.conv3.weight" in state
    blocks = layer_count(state, r"backbone\.body\.layer3\.(\d+)\.")
    name = _RESNETS.get((bottleneck, blocks))
    if name is None:
        kind = "bottleneck" if bottleneck else "basic"
        raise WeightsError(f"{source}: a ResNet with {blocks} {kind} blocks in layer3 is none of "
                           f"resnet18/34/50/101, the backbones this DETR builds")
    last_layer = "layer4" if any(n.startswith("backbone.body.layer4.") for n in state) else "layer3"
    frozen = not any(n.endswith("num_batches_tracked") for n in state)
    width = _require(state, "backbone.body.conv1.weight", source).shape[0]
    return BackboneConfig(name=name, dilation=dilation, frozen_batchnorm=frozen, pretrained=False,
                          last_layer=last_layer, width=width)


def infer_model_config(state: dict[str, torch.Tensor], source: str, hints: Hints | None = None) -> ModelConfig:
    """The ModelConfig that `state` (our names) fits, `source` naming it in errors."""
    hints = hints or Hints()
    defaults = ModelConfig()
    hidden_dim = _require(state, "input_proj.weight", source).shape[0]
    num_heads = hints.num_heads or defaults.num_heads
    if hidden_dim % num_heads:
        raise WeightsError(f"{source}: hidden size {hidden_dim} does not split into {num_heads} attention heads")
    return ModelConfig(
        num_classes=_require(state, "class_embed.weight", source).shape[0] - 1,
        num_queries=_require(state, "queries.embed.weight", source).shape[0],
        hidden_dim=hidden_dim,
        num_heads=num_heads,
        encoder_layers=layer_count(state, r"transformer\.encoder_layers\.(\d+)\."),
        decoder_layers=layer_count(state, r"transformer\.decoder_layers\.(\d+)\."),
        feedforward_dim=_require(state, "transformer.decoder_layers.0.ffn.linear1.weight", source).shape[0],
        dropout=defaults.dropout if hints.dropout is None else hints.dropout,
        pre_norm="transformer.encoder_norm.weight" in state,
        position_encoding="learned" if "position_encoding.row_embed.weight" in state else "sine",
        aux_loss=defaults.aux_loss if hints.aux_loss is None else hints.aux_loss,
        backbone=infer_backbone(state, source, bool(hints.dilation)),
    )
