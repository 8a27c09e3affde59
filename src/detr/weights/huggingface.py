"""Tensor-name mapping between this model and Hugging Face's DetrForObjectDetection.

transformers 5 in-memory names (`model.backbone.model.*`, `o_proj`,
`mlp.fc1`) are the canonical HF layout here. The names files use on disk
(`conv_encoder`, `out_proj`, `fc1` directly on the layer: what transformers 4
used and what transformers 5 still writes and reads) are accepted on input and
produced by `hf_disk_names`. The backbone is either timm's ResNet, whose tensor
names equal torchvision's, or transformers' own ResNet ("no_timm"), renamed
here to torchvision's names.
"""

from __future__ import annotations

import re

import torch

from detr.weights.base import NameMap, layer_count

# (our name, HF name) inside one layer; the packed attention in_proj is split apart separately.
_ENCODER_LAYER = [
    ("attn_block.norm.", "self_attn_layer_norm."),
    ("ffn.linear1.", "mlp.fc1."),
    ("ffn.linear2.", "mlp.fc2."),
    ("ffn_block.norm.", "final_layer_norm."),
    ("self_attn.out_proj.", "self_attn.o_proj."),
]
_DECODER_LAYER = [
    ("self_block.norm.", "self_attn_layer_norm."),
    ("cross_block.norm.", "encoder_attn_layer_norm."),
    ("ffn.linear1.", "mlp.fc1."),
    ("ffn.linear2.", "mlp.fc2."),
    ("ffn_block.norm.", "final_layer_norm."),
    ("self_attn.out_proj.", "self_attn.o_proj."),
    ("cross_attn.out_proj.", "encoder_attn.o_proj."),
]
_TOP = [
    ("backbone.body.", "model.backbone.model."),
    ("input_proj.", "model.input_projection."),
    ("position_encoding.row_embed.", "model.position_embedding.row_embeddings."),
    ("position_encoding.col_embed.", "model.position_embedding.column_embeddings."),
    ("queries.embed.", "model.query_position_embeddings."),
    ("transformer.decoder_norm.", "model.decoder.layernorm."),
    ("class_embed.", "class_labels_classifier."),
    ("bbox_embed.", "bbox_predictor."),
]
_NAMES = NameMap(_TOP, {"encoder": _ENCODER_LAYER, "decoder": _DECODER_LAYER},
                 (r"transformer\.(encoder|decoder)_layers\.(\d+)\.(.+)$",
                  r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)$"),
                 ("transformer.{}_layers.{}.", "model.{}.layers.{}."))
_PACKED = r"transformer\.(encoder|decoder)_layers\.(\d+)\.(self_attn|cross_attn)\.in_proj_(weight|bias)$"
_ATTENTIONS = {"encoder": [("self_attn", "self_attn")],
               "decoder": [("self_attn", "self_attn"), ("cross_attn", "encoder_attn")]}

_V4_TO_V5 = [
    (r"^model\.backbone\.conv_encoder\.model\.", "model.backbone.model."),
    (r"^model\.backbone\.position_embedding\.", "model.position_embedding."),
    (r"\.(self_attn|encoder_attn)\.out_proj\.", r".\1.o_proj."),
    (r"(layers\.\d+)\.fc([12])\.", r"\1.mlp.fc\2."),
]
_V5_TO_DISK = [
    (r"^model\.backbone\.model\.", "model.backbone.conv_encoder.model."),
    (r"\.(self_attn|encoder_attn)\.o_proj\.", r".\1.out_proj."),
    (r"(layers\.\d+)\.mlp\.fc([12])\.", r"\1.fc\2."),
]
# transformers' own ResNet (use_timm_backbone=False) -> torchvision names. Its
# bottleneck strides in the 3x3 convolution like torchvision's (as long as
# downsample_in_bottleneck is off), so only the names differ.
_HF_RESNET_TO_TORCHVISION = [
    (r"^(model\.backbone\.model\.)embedder\.embedder\.convolution\.", r"\1conv1."),
    (r"^(model\.backbone\.model\.)embedder\.embedder\.normalization\.", r"\1bn1."),
    (r"^(model\.backbone\.model\.)encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.",
     lambda m: f"{m[1]}layer{int(m[2]) + 1}.{m[3]}.downsample.0."),
    (r"^(model\.backbone\.model\.)encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.",
     lambda m: f"{m[1]}layer{int(m[2]) + 1}.{m[3]}.downsample.1."),
    (r"^(model\.backbone\.model\.)encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.",
     lambda m: f"{m[1]}layer{int(m[2]) + 1}.{m[3]}.conv{int(m[4]) + 1}."),
    (r"^(model\.backbone\.model\.)encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.",
     lambda m: f"{m[1]}layer{int(m[2]) + 1}.{m[3]}.bn{int(m[4]) + 1}."),
]


def _rename(state: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    renamed = {}
    for name, tensor in state.items():
        for pattern, replacement in rules:
            name = re.sub(pattern, replacement, name)
        renamed[name] = tensor
    return renamed


def _normalise_hf_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return _rename(_rename(state, _V4_TO_V5), _HF_RESNET_TO_TORCHVISION)


def hf_disk_names(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5 in-memory names -> the on-disk names both transformers 4 and 5 load."""
    return _rename(hf_state, _V5_TO_DISK)


def hf_to_ours(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a DetrForObjectDetection state dict to this project's DETR names."""
    hf_state = _normalise_hf_names(hf_state)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for kind in ("encoder", "decoder"):
        for i in range(layer_count(hf_state, rf"model\.{kind}\.layers\.(\d+)\.")):
            for ours_attn, hf_attn in _ATTENTIONS[kind]:
                hf = f"model.{kind}.layers.{i}.{hf_attn}"
                ours = f"transformer.{kind}_layers.{i}.{ours_attn}"
                for suffix in ("weight", "bias"):
                    parts = [f"{hf}.{p}_proj.{suffix}" for p in "qkv"]
                    out[f"{ours}.in_proj_{suffix}"] = torch.cat([hf_state[p] for p in parts])
                    used.update(parts)
    for name, tensor in hf_state.items():
        if name in used:
            continue
        renamed = _NAMES.rename(name, to_theirs=False)
        if renamed is None:
            raise KeyError(f"Hugging Face tensor {name!r} has no counterpart in this DETR")
        out[renamed] = tensor
    return out


def ours_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map this project's DETR state dict to DetrForObjectDetection (transformers 5) names."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        packed = re.match(_PACKED, name)
        if packed:
            kind, i, attn, suffix = packed.groups()
            for part, chunk in zip("qkv", tensor.chunk(3)):
                out[f"model.{kind}.layers.{i}.{dict(_ATTENTIONS[kind])[attn]}.{part}_proj.{suffix}"] = chunk.clone()
            continue
        renamed = _NAMES.rename(name, to_theirs=True)
        if renamed is None:
            raise KeyError(f"tensor {name!r} has no Hugging Face counterpart")
        out[renamed] = tensor
    return out
