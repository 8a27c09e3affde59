"""The model's outputs as types: one layer's predictions, and everything a forward pass returns.

Registered with torch's pytree, so that DistributedDataParallel, torch.compile and ONNX export
see through them to their tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch.utils._pytree import GetAttrKey, register_pytree_node

from detr.model.transformer import AttentionMaps


@dataclass
class Predictions:
    """One decoder layer's (or the proposals') predictions: logits [B, N, K+1] (the last is
    no-object) and boxes [B, N, 4] normalised cxcywh."""

    logits: torch.Tensor
    boxes: torch.Tensor


@dataclass
class TokenProposals(Predictions):
    """Query selection's per-token predictions over the encoder output, L tokens an image:
    valid [B, L] False on padding tokens (whose boxes lie far off, never matched), cells [B, L, 4]
    each token's own cell as a normalised cxcywh box."""

    valid: torch.Tensor
    cells: torch.Tensor


@dataclass
class DenoisingOutput(Predictions):
    """The denoising branch's final layer, and its earlier layers in `aux`: G groups a batch
    entry's image (entry b x G + g), query q reconstructing the image's target q; padding
    [B x G, Q] True on queries that only pad the batch."""

    aux: list[Predictions]
    padding: torch.Tensor
    groups: int


@dataclass
class DETROutput(Predictions):
    """The final decoder layer's predictions; the earlier layers' in `aux` (empty without
    model.aux_loss). In training: `proposals` (selected queries') and `denoising` (the branch's,
    given targets), else None. With need_weights: the attention maps, the encoder's grid (h, w)
    and the fine level's grid, whose tokens come first among the decoder's keys."""

    aux: list[Predictions] = field(default_factory=list)
    proposals: TokenProposals | None = None
    denoising: DenoisingOutput | None = None
    attention: AttentionMaps | None = None
    feature_shape: tuple[int, int] | None = None
    fine_shape: tuple[int, int] | None = None


def _register(kind: type, static: tuple[str, ...] = ()) -> None:
    """Register a dataclass with pytree: its tensor-holding fields as children, the `static` ones
    (plain ints and shapes) in the context, so that unflattening restores them."""
    children = [f.name for f in fields(kind) if f.name not in static]

    def flatten(value):
        return [getattr(value, name) for name in children], tuple(getattr(value, name) for name in static)

    def flatten_with_keys(value):
        values, context = flatten(value)
        return [(GetAttrKey(name), child) for name, child in zip(children, values)], context

    def unflatten(values, context):
        return kind(**dict(zip(children, values)), **dict(zip(static, context)))

    register_pytree_node(kind, flatten, unflatten, flatten_with_keys_fn=flatten_with_keys,
                         serialized_type_name=f"{kind.__module__}.{kind.__qualname__}")


_register(AttentionMaps)
_register(Predictions)
_register(TokenProposals)
_register(DenoisingOutput, static=("groups",))
_register(DETROutput, static=("feature_shape", "fine_shape"))
