"""DETR: a backbone, the transformer's encoder, a query source, a decoder and the class and box
heads, predicting a set of boxes. The builders (builders.py) choose the parts."""

from __future__ import annotations

import torch
from torch import nn

from detr.config import ModelConfig
from detr.model.backbone import Backbone
from detr.model.padding import coarser_cells, image_cells
from detr.model.class_scoring import ClassScoring
from detr.model.denoising import DenoisingBranch
from detr.model.encoded import EncodedImage
from detr.model.fine_level import FineLevel
from detr.model.joint_queries import join_queries
from detr.model.outputs import DenoisingOutput, DETROutput, Predictions
from detr.model.query_selection import QuerySelection
from detr.model.transformer import AttentionMaps, Transformer

# Parameter names of checkpoints written before the model was composed of parts: old prefix ->
# today's. Applied on loading, so that those checkpoints load unchanged.
OLD_PARAMETER_PREFIXES = {
    "query_embed.": "queries.embed.",
    "query_content.": "queries.content.",
    "query_anchor.": "queries.anchor.",
    "anchor_decoder.": "decoder.",
    "label_embed.": "denoising.label_embed.",
}


class DETR(nn.Module):
    def __init__(self, backbone: Backbone, position_encoding: nn.Module, input_proj: nn.Module,
                 transformer: Transformer, queries: nn.Module, decoder: nn.Module, class_embed: nn.Module,
                 bbox_embed: nn.Module, *, query_groups: int = 1, aux_loss: bool = True,
                 fine_level: FineLevel | None = None, query_selection: QuerySelection | None = None,
                 denoising: DenoisingBranch | None = None, scoring: ClassScoring = ClassScoring(),
                 config: ModelConfig | None = None) -> None:
        """query_groups: G groups of queries in training (Group DETR), one at inference;
        fine_level: a finer level after the encoder (its backbone returns two stages);
        query_selection: the encoder tokens' proposals, from which selected queries start;
        denoising: the training-only branch; scoring: how the class logits become scores, for
        whatever reads them (loss, post-processing, export, pictures); config: the settings the builder read, kept for
        tools that describe the model (export, pictures), never read here."""
        super().__init__()
        self.backbone = backbone
        self.position_encoding = position_encoding
        self.fine_level = fine_level
        self.input_proj = input_proj
        # Registered in this order so that parameters keep the order of checkpoints written before
        # the model was composed of parts (gradient clipping sums their norms in this order).
        self.queries = queries
        self.decoder = decoder
        self.transformer = transformer
        self.class_embed = class_embed
        self.bbox_embed = bbox_embed
        self.query_selection = query_selection
        self.denoising = denoising
        self.query_groups = query_groups
        self.aux_loss = aux_loss
        self.scoring = scoring
        self.config = config
        self.register_load_state_dict_pre_hook(_rename_old_parameters)

    @property
    def stride(self) -> int:
        """Input pixels per feature-map cell (of the single level that attention maps show)."""
        return self.backbone.stride

    def forward(
        self, images: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False,
        targets: list[dict] | None = None,
    ) -> DETROutput:
        """images [B, 3, H, W] normalised; mask [B, H, W] True on padding, or None; targets (as
        the criterion takes them): what the denoising branch noises, in training.

        In training with G > 1 query groups, the outputs hold G x num_queries queries (the
        criterion, told num_queries, splits them). See `DETROutput` for the rest.
        """
        maps = AttentionMaps([], [], [])
        encoded = self.encode(images, mask, maps, need_weights)
        groups = self.query_groups if self.training else 1
        selection = None
        if self.query_selection is not None:
            selection = self.query_selection(encoded.memory, encoded.feature_masks, self.queries.num_queries)
        queries = self.queries(encoded, groups, selection)
        denoising = None
        if self.denoising is not None and self.training and targets is not None:
            denoising = self.denoising(targets)
        batch = images.shape[0]
        if denoising is None:
            hidden, boxes = self.decoder(self.transformer, self.bbox_embed, queries, encoded, maps, need_weights)
            # [layers, B x G, N, ...] -> [layers, B, G x N, ...]: an image's groups side by side
            hidden, boxes = (x.flatten(1, 2).unflatten(1, (batch, -1)) for x in (hidden, boxes))
        else:  # one decoder pass for both, each set of queries masked from the others
            dn_queries, made_from = denoising
            joint = join_queries(queries, groups, dn_queries, made_from.groups, made_from.padding)
            hidden, boxes = self.decoder(self.transformer, self.bbox_embed, joint.queries, encoded, maps,
                                         need_weights, self_mask=joint.self_mask)
            (hidden, dn_hidden), (boxes, dn_boxes) = joint.split(hidden), joint.split(boxes)
        layers = self._heads(hidden, boxes)  # [layers, B, G x N, ...]
        out = DETROutput(layers[-1].logits, layers[-1].boxes, layers[:-1])
        if self.training:
            out.proposals = queries.proposals
        if denoising is not None:
            dn_layers = self._heads(dn_hidden, dn_boxes)
            out.denoising = DenoisingOutput(dn_layers[-1].logits, dn_layers[-1].boxes, dn_layers[:-1],
                                            made_from.padding, made_from.groups)
        if need_weights:
            out.attention, out.feature_shape, out.fine_shape = maps, encoded.shape, encoded.fine_shape
        return out

    def encode(self, images: torch.Tensor, mask: torch.Tensor | None, maps: AttentionMaps,
               need_weights: bool) -> EncodedImage:
        """The backbone, the input projection and the transformer's encoder (then the fine level,
        whose tokens come first: levels are ordered finest first)."""
        fine_map = None
        if self.fine_level is None:
            features, feature_mask = self.backbone(images, mask)
        else:
            fine_map, features = self.backbone.forward_levels(images, mask)
            # The cells each image alone has (not the paper's nearest resize of the mask): padded
            # batches give each image's own outputs (padding.py). The fine map is one stage up, and
            # the encoder's cells are the fine cells halved once.
            fine_cells = feature_mask = None
            if mask is not None:
                halvings = self.backbone.stride.bit_length() - 1  # the encoder's map: stride 2 ** halvings
                fine_cells = image_cells(mask, halvings - 1)
                feature_mask = ~coarser_cells(fine_cells)[:, 0]
        pos = self.position_encoding(features, feature_mask).flatten(2).transpose(1, 2)
        src = self.input_proj(features)
        height, width = src.shape[-2:]
        src = src.flatten(2).transpose(1, 2)
        padding = None if feature_mask is None else feature_mask.flatten(1)
        feature_masks = [feature_mask if feature_mask is not None else
                         torch.zeros(src.shape[0], height, width, dtype=torch.bool, device=src.device)]
        memory = self.transformer.encode(src, pos, padding, maps, need_weights)
        if fine_map is None:
            return EncodedImage(memory, pos, padding, feature_masks, (height, width))
        fine, fine_pos, fine_mask = self.fine_level(fine_map, memory, (height, width), fine_cells,
                                                    self.position_encoding)
        # Without the fine level's positions the decoder reads none (deformable attention).
        memory, pos = torch.cat([fine, memory], dim=1), None if fine_pos is None else torch.cat([fine_pos, pos], dim=1)
        if padding is not None:
            padding = torch.cat([fine_mask.flatten(1), padding], dim=1)
        return EncodedImage(memory, pos, padding, [fine_mask] + feature_masks, (height, width),
                            tuple(fine_map.shape[-2:]))

    def _heads(self, hidden: torch.Tensor, boxes: torch.Tensor) -> list[Predictions]:
        """The class head on every layer's output [layers, B, N, D], with its boxes: the layers
        whose predictions the outputs keep (all with aux_loss, else the last alone), in order."""
        logits = self.class_embed(hidden)
        layers = [Predictions(a, b) for a, b in zip(logits, boxes)]
        return layers if self.aux_loss else layers[-1:]


def _rename_old_parameters(module, state_dict, prefix, *args) -> None:
    for name in [n for n in state_dict if n.startswith(prefix)]:
        local = name[len(prefix):]
        for old, new in OLD_PARAMETER_PREFIXES.items():
            if local.startswith(old):
                state_dict[prefix + new + local[len(old):]] = state_dict.pop(name)
                break
