"""The official DETR checkpoint layout (facebookresearch/detr).

A file holds `{'model': state_dict, 'args': argparse.Namespace, ...}`. Tensor
names follow the reference modules: `backbone.0.body.*` (torchvision ResNet),
`backbone.1.*` (learned positions, if any), `transformer.encoder.layers.N.*`
with norm1 after self-attention and norm2 after the FFN, decoder layers with
`multihead_attn` for cross-attention and norm1/norm2/norm3 after self-, cross-
attention and FFN, `transformer.{encoder,decoder}.norm`, and the heads under
the same names as ours.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from detr.config import ExperimentConfig, LossConfig
from detr.data.coco import Categories
from detr.engine.checkpoint import save_atomic
from detr.weights.base import Hints, LoadedWeights, NameMap, WeightsError, infer_model_config
from detr.weights.coco_names import NUM_OFFICIAL_CLASSES, coco_categories, numbered_categories

# (ours, official) name prefixes outside the transformer layers.
_PREFIXES = [
    ("backbone.body.", "backbone.0.body."),
    ("position_encoding.", "backbone.1."),
    ("transformer.encoder_norm.", "transformer.encoder.norm."),
    ("transformer.decoder_norm.", "transformer.decoder.norm."),
    ("input_proj.", "input_proj."),
    ("queries.embed.", "query_embed."),
    ("class_embed.", "class_embed."),
    ("bbox_embed.", "bbox_embed."),
]
# (ours, official) names inside one layer.
_LAYERS = {
    "encoder": [
        ("self_attn.", "self_attn."),
        ("ffn.linear1.", "linear1."),
        ("ffn.linear2.", "linear2."),
        ("attn_block.norm.", "norm1."),
        ("ffn_block.norm.", "norm2."),
    ],
    "decoder": [
        ("self_attn.", "self_attn."),
        ("cross_attn.", "multihead_attn."),
        ("ffn.linear1.", "linear1."),
        ("ffn.linear2.", "linear2."),
        ("self_block.norm.", "norm1."),
        ("cross_block.norm.", "norm2."),
        ("ffn_block.norm.", "norm3."),
    ],
}
_LAYER_NAME = (r"transformer\.(encoder|decoder)_layers\.(\d+)\.(.+)$",
               r"transformer\.(encoder|decoder)\.layers\.(\d+)\.(.+)$")
_LAYER_PREFIX = ("transformer.{}_layers.{}.", "transformer.{}.layers.{}.")
_NAMES = NameMap(_PREFIXES, _LAYERS, _LAYER_NAME, _LAYER_PREFIX)
_SEGMENTATION = ("detr.", "bbox_attention.", "mask_head.")

# official argparse name -> LossConfig field
_LOSS_ARGS = {
    "set_cost_class": "cost_class",
    "set_cost_bbox": "cost_bbox",
    "set_cost_giou": "cost_giou",
    "bbox_loss_coef": "weight_bbox",
    "giou_loss_coef": "weight_giou",
    "eos_coef": "eos_coef",
}


def is_official_state(state: dict[str, Any]) -> bool:
    return any(n.startswith(("backbone.0.body.", "transformer.encoder.layers.", "detr.")) for n in state)


def _rename_all(state: dict[str, torch.Tensor], to_official: bool, source: str) -> dict[str, torch.Tensor]:
    """Every tensor renamed one way; BatchNorm step counters dropped (the official BN is frozen)."""
    out = {}
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        renamed = _NAMES.rename(name, to_theirs=to_official)
        if renamed is None:
            where = "the official DETR layout" if to_official else "this DETR"
            raise WeightsError(f"{source}: tensor {name!r} has no counterpart in {where}")
        out[renamed] = tensor
    return out


def official_to_ours(state: dict[str, torch.Tensor], source: str = "weights") -> dict[str, torch.Tensor]:
    """Official tensor names -> ours."""
    if any(n.startswith(_SEGMENTATION) for n in state):
        raise WeightsError(f"{source} is a panoptic segmentation DETR; only detection models are supported")
    return _rename_all(state, to_official=False, source=source)


def ours_to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our tensor names -> official ones."""
    return _rename_all(state, to_official=True, source="weights")


def _arg_values(args: Any) -> dict[str, Any]:
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return dict(args) if isinstance(args, dict) else {}


def read_official(payload: dict[str, Any], source: str, dilation: bool | None = None) -> LoadedWeights:
    """An official checkpoint (or a bare official state dict) already loaded with torch.load.

    `dilation` is the fallback when the file has no `args` (it cannot be
    read from the weights): a named model says it, else it is off.
    """
    state = payload["model"] if isinstance(payload.get("model"), dict) else payload
    args = _arg_values(payload.get("args"))
    ours = official_to_ours(state, source)
    hints = Hints(num_heads=args.get("nheads"), dilation=args.get("dilation", dilation),
                  dropout=args.get("dropout"), aux_loss=args.get("aux_loss"))
    model = infer_model_config(ours, source, hints)
    loss = LossConfig(**{field: float(args[name]) for name, field in _LOSS_ARGS.items() if name in args})
    if isinstance(payload.get("categories"), dict):
        categories = Categories.from_dict(payload["categories"])
    elif model.num_classes == NUM_OFFICIAL_CLASSES:
        categories = coco_categories()
    else:
        categories = numbered_categories(model.num_classes)
    if len(categories.ids) != model.num_classes:
        raise WeightsError(f"{source}: {len(categories.ids)} category names for {model.num_classes} classes")
    return LoadedWeights(ExperimentConfig(model=model, loss=loss), ours, categories)


def official_args(config: ExperimentConfig) -> argparse.Namespace:
    """The reference's argparse settings that describe this model and loss."""
    model, loss = config.model, config.loss
    # The reference derives its class count from dataset_file; 'coco' means 91.
    dataset = {"dataset_file": "coco"} if model.num_classes == NUM_OFFICIAL_CLASSES else {}
    return argparse.Namespace(
        backbone=model.backbone.name,
        dilation=model.backbone.dilation,
        position_embedding=model.position_encoding,
        enc_layers=model.encoder_layers,
        dec_layers=model.decoder_layers,
        dim_feedforward=model.feedforward_dim,
        hidden_dim=model.hidden_dim,
        dropout=model.dropout,
        nheads=model.num_heads,
        num_queries=model.num_queries,
        pre_norm=model.pre_norm,
        aux_loss=model.aux_loss,
        masks=False,
        num_classes=model.num_classes,
        **dataset,
        **{name: getattr(loss, field) for name, field in _LOSS_ARGS.items()},
    )


def write_official(path: str | Path, weights: LoadedWeights) -> Path:
    """One .pth file the reference code loads (`checkpoint['model']`); our categories ride along."""
    path = Path(path)
    payload = {"model": ours_to_official(weights.state), "args": official_args(weights.config),
               "categories": weights.categories.to_dict()}
    save_atomic(payload, path)
    return path
