"""DETR: backbone + transformer + class and box heads, predicting a set of boxes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from detr.config import ModelConfig
from detr.model.anchor_decoder import AnchorDecoder, inverse_sigmoid
from detr.model.backbone import Backbone, resize_mask
from detr.model.denoising import noised_queries
from detr.model.fine_level import FineLevel
from detr.model.multi_scale import Levels, backbone_stages, levels_of
from detr.model.position_encoding import LearnedPositionEncoding, SinePositionEncoding
from detr.model.query_selection import QuerySelection
from detr.model.transformer import AttentionMaps, Transformer


class MLP(nn.Module):
    """Linear layers with ReLU between them (the box head)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class DETR(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.hidden_dim
        _check_levels(config)
        self.fine_level = None
        if config.fine_level:
            self.backbone = Backbone(config.backbone, backbone_stages(config.backbone.last_layer, 2))
        else:
            self.backbone = Backbone(config.backbone)
        encodings = {"sine": SinePositionEncoding, "learned": LearnedPositionEncoding}
        self.position_encoding = encodings[config.position_encoding](dim)
        if config.fine_level:
            self.fine_level = FineLevel(self.backbone.stage_channels[0], dim)
        self.input_proj = nn.Conv2d(self.backbone.num_channels, dim, kernel_size=1)
        if config.query_groups < 1:
            raise ValueError(f"model.query_groups must be at least 1, not {config.query_groups}")
        if config.class_pairs < 0:
            raise ValueError(f"model.class_pairs is 0 (one class per query) or more, not {config.class_pairs}")
        deformable_decoder = config.decoder_attention == "deformable"
        if (config.query_selection or config.denoising_groups or deformable_decoder) and not config.anchor_queries:
            raise ValueError("model.query_selection, model.denoising_groups and model.decoder_attention='deformable' "
                             "need model.anchor_queries=True")
        if config.selected_content and not config.query_selection:
            raise ValueError("model.selected_content needs model.query_selection=True")
        if config.distinct_queries and not config.query_selection:
            raise ValueError("model.distinct_queries needs model.query_selection=True")
        if not 0.0 <= config.distinct_queries < 1.0:
            raise ValueError(f"model.distinct_queries is an IoU threshold in [0, 1) (0: off), "
                             f"got {config.distinct_queries}")
        queries = config.num_queries * config.query_groups
        # Group g's queries are rows g*N .. (g+1)*N - 1; inference uses group 0.
        if config.anchor_queries:
            self.query_content = nn.Embedding(queries, dim)
            if not config.query_selection:  # learned anchors; query selection chooses them per image
                self.query_anchor = nn.Embedding(queries, 4)  # inverse-sigmoid cxcywh
                with torch.no_grad():
                    boxes = torch.cat([torch.rand(queries, 2), torch.full((queries, 2), 0.1)], dim=1)
                    self.query_anchor.weight.copy_(inverse_sigmoid(boxes))
            else:  # checkpoints written before 2026-11-29 hold these unused anchors: skip them
                self.register_load_state_dict_pre_hook(_skip_unused_anchors)
            self.anchor_decoder = AnchorDecoder(dim)
        else:
            self.query_embed = nn.Embedding(queries, dim)
        self.transformer = Transformer(
            dim,
            config.num_heads,
            config.encoder_layers,
            config.decoder_layers,
            config.feedforward_dim,
            config.dropout,
            config.pre_norm,
            _memory_levels(config) if config.decoder_attention == "deformable" else 0,
            config.deformable_points,
        )
        self.class_embed = nn.Linear(dim, config.num_classes + 1)
        self.bbox_embed = MLP(dim, dim, 4, 3)
        if config.anchor_queries:  # boxes start as the anchors; the head learns corrections
            _zero_last_layer(self.bbox_embed)
        if config.query_selection:
            self.query_selection = QuerySelection(dim, config.num_classes, _zero_last_layer(MLP(dim, dim, 4, 3)),
                                                  config.distinct_queries)
        if config.denoising_groups:
            self.label_embed = nn.Embedding(config.num_classes, dim)

    @property
    def stride(self) -> int:
        """Input pixels per feature-map cell (of the single level that attention maps show)."""
        return self.backbone.stride

    def forward(
        self, images: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False,
        targets: list[dict] | None = None,
    ) -> dict[str, Any]:
        """images [B, 3, H, W] normalised; mask [B, H, W] True on padding, or None.

        Returns pred_logits [B, N, K+1], pred_boxes [B, N, 4] (normalised
        cxcywh), aux_outputs (one dict per earlier decoder layer) and, with
        need_weights, `attention` (AttentionMaps) and `feature_shape` (h, w); with the fine
        level also `fine_shape` (its grid, whose tokens come first among the decoder's keys).
        In training with G > 1 query groups, N is G x num_queries (the criterion,
        told num_queries, splits them). In training, the variants add `enc_outputs`
        (query selection's proposals) and, given `targets` (as the criterion takes them),
        `dn_outputs` (the denoising queries' outputs).
        With the fine level, the decoder's tokens are the fine map's, then the encoder's.
        """
        fine_map = None
        if self.fine_level is None:
            features, feature_mask = self.backbone(images, mask)
        else:
            fine_map, features = self.backbone.forward_levels(images)
            feature_mask = None if mask is None else resize_mask(mask, features.shape[-2:])
        pos = self.position_encoding(features, feature_mask).flatten(2).transpose(1, 2)
        src = self.input_proj(features)
        height, width = src.shape[-2:]
        src = src.flatten(2).transpose(1, 2)
        padding = None if feature_mask is None else feature_mask.flatten(1)
        feature_masks = [feature_mask if feature_mask is not None else
                         torch.zeros(src.shape[0], height, width, dtype=torch.bool, device=src.device)]
        groups = self.config.query_groups if self.training else 1
        maps = AttentionMaps([], [], [])
        memory = self.transformer.encode(src, pos, padding, maps, need_weights)
        if fine_map is not None:  # the fine level's tokens first: levels are ordered finest first
            fine, fine_pos, fine_mask = self.fine_level(fine_map, memory, (height, width), mask,
                                                        self.position_encoding)
            memory, pos = torch.cat([fine, memory], dim=1), torch.cat([fine_pos, pos], dim=1)
            if padding is not None:
                padding = torch.cat([fine_mask.flatten(1), padding], dim=1)
            feature_masks = [fine_mask] + feature_masks
        if self.config.anchor_queries:
            levels = levels_of(feature_masks) if self.config.decoder_attention == "deformable" else None
            out = self._decode_anchors(memory, pos, padding, feature_masks, groups, maps, need_weights, levels)
            if self.training and targets is not None and self.config.denoising_groups:
                out.update(self._decode_denoising(memory, pos, padding, targets, levels))
        else:
            out = self._decode_paper(memory, pos, padding, groups, maps, need_weights)
        if need_weights:
            out["attention"] = maps
            out["feature_shape"] = (height, width)
            if fine_map is not None:  # the decoder's keys: the fine tokens, then the coarse ones
                out["fine_shape"] = tuple(fine_map.shape[-2:])
        return out

    def _heads(self, hidden: torch.Tensor, boxes: torch.Tensor | None = None) -> dict[str, Any]:
        """The class head (and the box head, for the paper's queries) on every layer's output
        [layers, B, N, D]: the last layer's outputs, and the others' as aux_outputs."""
        logits = self.class_embed(hidden)
        if boxes is None:
            boxes = self.bbox_embed(hidden).sigmoid()
        out: dict[str, Any] = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.config.aux_loss:
            out["aux_outputs"] = [
                {"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])
            ]
        return out

    def _decode_paper(self, memory, pos, padding, groups: int, maps: AttentionMaps, need_weights: bool
                      ) -> dict[str, Any]:
        batch, queries = memory.shape[0], self.config.num_queries
        query_pos = self.query_embed.weight[: groups * queries].view(groups, queries, -1)
        query_pos = query_pos[None].expand(batch, -1, -1, -1).flatten(0, 1)  # [B x G, N, D]
        hidden = self.transformer.decode_groups(memory, pos, query_pos, padding, maps, need_weights)
        return self._heads(hidden.unflatten(1, (batch, groups)).flatten(2, 3))  # [layers, B, G x N, D]

    def _decode_anchors(self, memory, pos, padding, feature_masks: list[torch.Tensor], groups: int,
                        maps: AttentionMaps, need_weights: bool, levels: Levels | None) -> dict[str, Any]:
        batch, queries, dim = memory.shape[0], self.config.num_queries, memory.shape[-1]
        content = self.query_content.weight[: groups * queries].view(groups, queries, dim)
        content = content[None].expand(batch, -1, -1, -1).flatten(0, 1)  # [B x G, N, D]
        proposals = None
        if self.config.query_selection:
            proposals, anchors, selected = self.query_selection(memory, feature_masks, queries)
            anchors = anchors.repeat_interleave(groups, 0)  # every group starts from the same boxes
            if self.config.selected_content:  # plus each group's own vectors, so that groups still differ
                content = content + selected.repeat_interleave(groups, 0)
        else:
            anchors = self.query_anchor.weight[: groups * queries].view(groups, queries, 4)
            anchors = anchors[None].expand(batch, -1, -1, -1).flatten(0, 1)
        hidden, boxes = self.anchor_decoder(self.transformer, self.bbox_embed, content, anchors,
                                            memory, pos, padding,
                                            maps=maps, need_weights=need_weights, levels=levels)
        out = self._heads(hidden.unflatten(1, (batch, groups)).flatten(2, 3),
                          boxes.unflatten(1, (batch, groups)).flatten(2, 3))
        if proposals is not None and self.training:
            out["enc_outputs"] = proposals
        return out

    def _decode_denoising(self, memory, pos, padding, targets: list[dict], levels: Levels | None = None
                          ) -> dict[str, Any]:
        config = self.config
        queries = noised_queries(targets, config.denoising_groups, config.num_classes,
                                 config.denoising_box_noise, config.denoising_label_noise)
        if queries is None:
            return {}
        hidden, boxes = self.anchor_decoder(self.transformer, self.bbox_embed, self.label_embed(queries.labels),
                                            queries.anchors, memory, pos, padding,
                                            query_padding=queries.padding, levels=levels)
        out = self._heads(hidden, boxes)
        out.update(padding=queries.padding, groups=queries.groups)
        return {"dn_outputs": out}


def _skip_unused_anchors(module, state_dict, prefix, *args) -> None:
    state_dict.pop(prefix + "query_anchor.weight", None)


def _memory_levels(config: ModelConfig) -> int:
    """How many levels the decoder's memory holds: the encoder's, and the fine one's."""
    return 2 if config.fine_level else 1


def _check_levels(config: ModelConfig) -> None:
    if config.decoder_attention not in ("full", "deformable"):
        raise ValueError(f"model.decoder_attention is 'full' or 'deformable', not {config.decoder_attention!r}")
    if config.deformable_points < 1:
        raise ValueError("model.deformable_points must be at least 1")
    if config.fine_level and config.backbone.last_layer == "layer2":
        raise ValueError("model.fine_level needs a backbone stage before the last; set backbone.last_layer "
                         "to layer3 or layer4")


def _zero_last_layer(head: MLP) -> MLP:
    """A box head that starts by predicting no correction to its anchors."""
    nn.init.zeros_(head.layers[-1].weight)
    nn.init.zeros_(head.layers[-1].bias)
    return head


def build_model(config: ModelConfig) -> DETR:
    return DETR(config)
