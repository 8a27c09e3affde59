"""DETR: backbone + transformer + class and box heads, predicting a set of boxes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from detr.config import ModelConfig
from detr.model.backbone import Backbone
from detr.model.position_encoding import LearnedPositionEncoding, SinePositionEncoding
from detr.model.transformer import Transformer


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
        self.backbone = Backbone(config.backbone)
        encodings = {"sine": SinePositionEncoding, "learned": LearnedPositionEncoding}
        self.position_encoding = encodings[config.position_encoding](dim)
        self.input_proj = nn.Conv2d(self.backbone.num_channels, dim, kernel_size=1)
        if config.query_groups < 1:
            raise ValueError(f"model.query_groups must be at least 1, not {config.query_groups}")
        # Group g's queries are rows g*N .. (g+1)*N - 1; inference uses group 0.
        self.query_embed = nn.Embedding(config.num_queries * config.query_groups, dim)
        self.transformer = Transformer(
            dim,
            config.num_heads,
            config.encoder_layers,
            config.decoder_layers,
            config.feedforward_dim,
            config.dropout,
            config.pre_norm,
        )
        self.class_embed = nn.Linear(dim, config.num_classes + 1)
        self.bbox_embed = MLP(dim, dim, 4, 3)

    def forward(
        self, images: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> dict[str, Any]:
        """images [B, 3, H, W] normalised; mask [B, H, W] True on padding, or None.

        Returns pred_logits [B, N, K+1], pred_boxes [B, N, 4] (normalised
        cxcywh), aux_outputs (one dict per earlier decoder layer) and, with
        need_weights, `attention` (AttentionMaps) and `feature_shape` (h, w).
        In training with G > 1 query groups, N is G x num_queries and
        `query_groups` says G.
        """
        features, feature_mask = self.backbone(images, mask)
        pos = self.position_encoding(features, feature_mask).flatten(2).transpose(1, 2)
        src = self.input_proj(features)
        height, width = src.shape[-2:]
        src = src.flatten(2).transpose(1, 2)
        padding = None if feature_mask is None else feature_mask.flatten(1)
        batch, queries = src.shape[0], self.config.num_queries
        groups = self.config.query_groups if self.training else 1
        query_pos = self.query_embed.weight[: groups * queries].view(groups, queries, -1)
        query_pos = query_pos[None].expand(batch, -1, -1, -1).flatten(0, 1)  # [B x G, N, D]
        hidden, _, maps = self.transformer(src, pos, query_pos, padding, need_weights)
        hidden = hidden.unflatten(1, (batch, groups)).flatten(2, 3)  # [layers, B, G x N, D]

        logits = self.class_embed(hidden)
        boxes = self.bbox_embed(hidden).sigmoid()
        out: dict[str, Any] = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if groups > 1:
            out["query_groups"] = groups  # the criterion matches each group on its own
        if self.config.aux_loss:
            out["aux_outputs"] = [
                {"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])
            ]
        if need_weights:
            out["attention"] = maps
            out["feature_shape"] = (height, width)
        return out


def build_model(config: ModelConfig) -> DETR:
    return DETR(config)
