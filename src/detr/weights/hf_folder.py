"""Hugging Face model folders (config.json + model.safetensors or pytorch_model.bin).

Reads DetrForObjectDetection folders with a timm ResNet backbone (the
default, `facebook/detr-resnet-50`) or transformers' own ResNet (the
`no_timm` revisions), written by transformers 4 or 5; writes folders that
DetrForObjectDetection.from_pretrained loads, with a timm backbone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from detr.config import ExperimentConfig
from detr.data.coco import Categories
from detr.weights.base import Hints, LoadedWeights, WeightsError, infer_model_config
from detr.engine.checkpoint import read_torch_file, write_atomic
from detr.weights.coco_names import PLACEHOLDER
from detr.weights.huggingface import hf_disk_names, hf_to_ours, ours_to_hf

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
PICKLE = "pytorch_model.bin"
_TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
log = logging.getLogger(__name__)


def read_json(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsError(f"cannot read {path}: {error}") from None
    if not isinstance(values, dict):
        raise WeightsError(f"{path} does not hold a JSON object")
    return values


def _timm_resnet(name: str | None, source: str) -> str | None:
    """The torchvision ResNet a timm name stands for; None (the weights tell) when unnamed."""
    if not name:
        return None
    # "timm/resnet50.a1_in1k" and "tv_resnet50" are resnet50 architectures.
    base = name.split("/")[-1].split(".")[0].removeprefix("tv_")
    if base not in _TORCHVISION_RESNETS:
        raise WeightsError(f"{source}: backbone {name!r} is not one of {', '.join(_TORCHVISION_RESNETS)}, "
                           "the backbones this DETR builds")
    return base


def _last_layer(last_index: int, source: str) -> str:
    if last_index not in (3, 4):
        raise WeightsError(f"{source}: a backbone output at stage {last_index} is not supported (layer3 or layer4)")
    return f"layer{last_index}"


def _backbone(config: dict[str, Any], source: str) -> tuple[str | None, bool, str]:
    """(ResNet name or None if only the weights tell, dilation, last layer) from config.json."""
    backbone = config.get("backbone_config")
    dilation = bool(config.get("dilation"))
    if backbone is None and config.get("use_timm_backbone", True):  # transformers 4 and its files
        indices = (config.get("backbone_kwargs") or {}).get("out_indices") or [4]
        return _timm_resnet(config.get("backbone"), source), dilation, _last_layer(indices[-1], source)
    backbone = backbone or {"model_type": "resnet"}
    kind = backbone.get("model_type")
    if kind == "timm_backbone":
        indices = backbone.get("out_indices") or [4]
        dilation = dilation or backbone.get("output_stride") == 16
        return _timm_resnet(backbone.get("backbone"), source), dilation, _last_layer(indices[-1], source)
    if kind == "resnet":
        if backbone.get("downsample_in_bottleneck") or backbone.get("downsample_in_first_stage"):
            raise WeightsError(f"{source}: this ResNet strides where torchvision's does not "
                               "(downsample_in_bottleneck / downsample_in_first_stage)")
        stages = backbone.get("out_features") or ["stage4"]
        return None, False, _last_layer(int(stages[-1].removeprefix("stage")), source)
    raise WeightsError(f"{source}: backbone type {kind!r} has no torchvision ResNet counterpart")


def _read_state(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / SAFETENSORS).is_file():
        return load_file(folder / SAFETENSORS)
    if (folder / PICKLE).is_file():
        return read_torch_file(folder / PICKLE, WeightsError)
    raise WeightsError(f"{folder} has {CONFIG} but neither {SAFETENSORS} nor {PICKLE}")


def read_hf_state(hf_state: dict[str, torch.Tensor], config: dict[str, Any], source: str) -> LoadedWeights:
    """A DetrForObjectDetection state dict and its config.json values, in our terms."""
    if config.get("activation_function", "relu") != "relu":
        raise WeightsError(f"{source}: activation {config['activation_function']!r}; this DETR uses relu")
    heads = config.get("encoder_attention_heads", 8)
    if config.get("decoder_attention_heads", heads) != heads:
        raise WeightsError(f"{source}: encoder and decoder attention heads differ; this DETR shares one count")
    name, dilation, last_layer = _backbone(config, source)
    try:
        state = hf_to_ours(hf_state)
    except KeyError as error:
        raise WeightsError(f"{source}: does not fit DetrForObjectDetection ({error.args[0]})") from None
    # HF freezes BatchNorm; a layer3 backbone may still carry (unused) layer4 tensors.
    state = {n: t for n, t in state.items() if not n.endswith("num_batches_tracked")
             and not (last_layer == "layer3" and n.startswith("backbone.body.layer4."))}
    if config.get("auxiliary_loss"):
        log.warning("%s: transformers runs this DETR with auxiliary_loss on, which also normalises each decoder "
                    "layer's input; this model follows the reference, so its outputs will differ", source)
    hints = Hints(num_heads=heads, dilation=dilation, dropout=config.get("dropout"))
    model = infer_model_config(state, source, hints)
    if name is not None and model.backbone.name != name:
        raise WeightsError(f"{source}: config.json names backbone {name} but the weights are a {model.backbone.name}")
    labels = config.get("id2label") or {}
    ids = config.get("category_ids")
    if not (isinstance(ids, list) and len(ids) == model.num_classes):
        ids = list(range(model.num_classes))
    names = [str(labels.get(str(i), PLACEHOLDER)) for i in range(model.num_classes)]
    return LoadedWeights(ExperimentConfig(model=model), state, Categories(tuple(int(i) for i in ids), tuple(names)))


def read_hf(folder: Path, source: str | None = None) -> LoadedWeights:
    config = read_json(folder / CONFIG)
    return read_hf_state(_read_state(folder), config, source or str(folder))


def hf_config(weights: LoadedWeights) -> dict[str, Any]:
    """config.json for DetrForObjectDetection, readable by transformers 4 and 5.

    A backbone cut at layer3 needs transformers 5's `backbone_config` form;
    `category_ids` keeps our dataset ids (transformers ignores the key).
    """
    model = weights.config.model
    if model.pre_norm:
        raise WeightsError("Hugging Face's DETR has no pre-norm transformer; convert to 'ours' or 'official'")
    backbone = model.backbone
    if backbone.last_layer == "layer4":
        layout = {"use_timm_backbone": True, "backbone": backbone.name, "backbone_config": None,
                  "use_pretrained_backbone": False, "dilation": backbone.dilation}
    else:
        layout = {"backbone_config": {"model_type": "timm_backbone", "backbone": backbone.name,
                                      "features_only": True, "use_pretrained_backbone": False,
                                      "num_channels": 3, "out_indices": [1, 2, 3]},
                  "use_pretrained_backbone": False, "dilation": False}
    names = weights.categories.names
    return {
        "architectures": ["DetrForObjectDetection"],
        "model_type": "detr",
        **layout,
        "num_channels": 3,
        "d_model": model.hidden_dim,
        "encoder_layers": model.encoder_layers,
        "decoder_layers": model.decoder_layers,
        "encoder_attention_heads": model.num_heads,
        "decoder_attention_heads": model.num_heads,
        "encoder_ffn_dim": model.feedforward_dim,
        "decoder_ffn_dim": model.feedforward_dim,
        "num_queries": model.num_queries,
        "activation_function": "relu",
        # The reference applies one dropout rate to attention, FFN and residuals.
        "dropout": model.dropout,
        "attention_dropout": model.dropout,
        "activation_dropout": model.dropout,
        "position_embedding_type": model.position_encoding,
        # transformers' auxiliary_loss also normalises each decoder layer's input,
        # unlike the reference; off, its forward matches ours.
        "auxiliary_loss": False,
        "id2label": {str(i): name for i, name in enumerate(names)},
        "label2id": {name: i for i, name in enumerate(names)},
        "category_ids": list(weights.categories.ids),
    }


def write_hf(folder: str | Path, weights: LoadedWeights) -> Path:
    """A folder that DetrForObjectDetection.from_pretrained loads."""
    folder = Path(folder)
    config = hf_config(weights)
    state = {n: t for n, t in weights.state.items() if not n.endswith("num_batches_tracked")}
    tensors = {n: t.contiguous() for n, t in hf_disk_names(ours_to_hf(state)).items()}
    write_atomic(folder / SAFETENSORS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    write_atomic(folder / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
    return folder


def fetch_hub(repo_id: str, revision: str | None = None) -> Path:
    """A hub model's folder (config.json + weights) in huggingface_hub's cache."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise WeightsError(f"{repo_id!r} is not a local file or folder; install huggingface_hub "
                           "to fetch it from the Hugging Face Hub") from None
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[CONFIG, SAFETENSORS]))
        if not (folder / SAFETENSORS).is_file():
            folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[CONFIG, PICKLE]))
    except Exception as error:  # noqa: BLE001 - offline, unknown repo, gated: one clear line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"{repo_id!r} is not a local file or folder, and the Hugging Face Hub "
                           f"did not give it: {first}") from None
    return folder
