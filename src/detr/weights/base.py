"""What every weights layout shares: the error, the loaded result, and the
ModelConfig read off a state dict in this project's names.

Everything the tensors show is taken from them (backbone depth, widths,
layer counts, classes, queries, pre-norm, learned positions). What they
cannot show (attention heads, dilation, dropout, auxiliary losses) comes from
the caller's hints, which default to the paper's values.
"""

from __future__ import annotations

import argparse
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

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


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for name in state if (m := re.match(pattern, name))}
    return max(found) + 1 if found else 0


def _require(state: dict[str, torch.Tensor], name: str, source: str) -> torch.Tensor:
    if name not in state:
        raise WeightsError(f"{source}: no tensor {name!r}, so these are not complete DETR weights")
    return state[name]


def infer_backbone(state: dict[str, torch.Tensor], source: str, dilation: bool = False) -> BackboneConfig:
    bottleneck = "backbone.body.layer1.0.conv3.weight" in state
    blocks = _count(state, r"backbone\.body\.layer3\.(\d+)\.")
    name = _RESNETS.get((bottleneck, blocks))
    if name is None:
        kind = "bottleneck" if bottleneck else "basic"
        raise WeightsError(f"{source}: a ResNet with {blocks} {kind} blocks in layer3 is none of "
                           f"resnet18/34/50/101, the backbones this DETR builds")
    last_layer = "layer4" if any(n.startswith("backbone.body.layer4.") for n in state) else "layer3"
    frozen = not any(n.endswith("num_batches_tracked") for n in state)
    return BackboneConfig(name=name, dilation=dilation, frozen_batchnorm=frozen, pretrained=False,
                          last_layer=last_layer)


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
        num_queries=_require(state, "query_embed.weight", source).shape[0],
        hidden_dim=hidden_dim,
        num_heads=num_heads,
        encoder_layers=_count(state, r"transformer\.encoder_layers\.(\d+)\."),
        decoder_layers=_count(state, r"transformer\.decoder_layers\.(\d+)\."),
        feedforward_dim=_require(state, "transformer.decoder_layers.0.ffn.linear1.weight", source).shape[0],
        dropout=defaults.dropout if hints.dropout is None else hints.dropout,
        pre_norm="transformer.encoder_norm.weight" in state,
        position_encoding="learned" if "position_encoding.row_embed.weight" in state else "sine",
        aux_loss=defaults.aux_loss if hints.aux_loss is None else hints.aux_loss,
        backbone=infer_backbone(state, source, bool(hints.dilation)),
    )


def safe_torch_load(path: Path) -> Any:
    """torch.load that never runs code from the file: tensors and plain values only,
    plus argparse.Namespace, which the official checkpoints pickle as `args`."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "Weights only load failed" not in text:
            raise WeightsError(f"cannot read {path}: {_first_line(text)}") from None
        lines = [line.strip() for line in text.splitlines()]
        culprit = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), "")
        if "GLOBAL" in culprit:  # a reference to a Python callable or class: the way pickles run code
            raise WeightsError(f"refusing to load {path}: it pickles Python objects beyond tensors, plain values "
                               f"and argparse.Namespace, and unpickling them could run code ({culprit})") from None
        raise WeightsError(f"cannot read {path}: not a PyTorch weights file, or not one that is safe "
                           f"to unpickle ({culprit})") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        reason = f"{type(error).__name__}: {_first_line(str(error))}"
        raise WeightsError(f"cannot read {path}: not a PyTorch weights file ({reason})") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "empty error"
