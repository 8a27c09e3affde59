"""Builders: each reads a ModelConfig once and composes a DETR from parts.

A new decoder, query source or training branch is a new part and one line here.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from detr.config import ModelConfig
from detr.model.anchor_decoder import AnchorDecoder
from detr.model.backbone import Backbone
from detr.model.class_scoring import ClassScoring
from detr.model.denoising import DenoisingBranch
from detr.model.detr import DETR
from detr.model.fine_level import FINE_LEVEL_MIXES, FineLevel
from detr.model.heads import MLP, zero_last_layer
from detr.model.multi_scale import backbone_stages
from detr.model.paper_decoder import PaperDecoder
from detr.model.position_encoding import LearnedPositionEncoding, SinePositionEncoding
from detr.model.queries import LearnedAnchors, LearnedQueries, SelectedQueries
from detr.model.query_selection import CandidateQuerySelection, QuerySelection
from detr.model.transformer import Transformer

POSITION_ENCODINGS = {"sine": SinePositionEncoding, "learned": LearnedPositionEncoding}


def build_model(config: ModelConfig) -> DETR:
    config.check()
    return build_paper_detr(config) if config.queries == "learned" else build_anchor_detr(config)


def build_paper_detr(config: ModelConfig) -> DETR:
    """The paper's DETR: learned queries, full attention, boxes straight from the head
    (with model.fine_level, the finer level joins the decoder's keys)."""
    dim = config.hidden_dim
    backbone, position_encoding, fine_level, input_proj = _image_parts(config, positions=True)
    queries = LearnedQueries(config.num_queries, config.query_groups, dim)
    transformer = _transformer(config, deformable_levels=0)
    return DETR(backbone, position_encoding, input_proj, transformer, queries, PaperDecoder(),
                nn.Linear(dim, config.num_classes + 1), MLP(dim, dim, 4, 3), query_groups=config.query_groups,
                aux_loss=config.aux_loss, fine_level=fine_level, scoring=ClassScoring(config.class_pairs),
                config=config)


def build_anchor_detr(config: ModelConfig) -> DETR:
    """Anchor-box queries (learned, or selected from the encoder's tokens) refined layer by layer,
    with full or deformable cross-attention, and the optional denoising branch."""
    dim = config.hidden_dim
    deformable = config.decoder_attention == "deformable"
    backbone, position_encoding, fine_level, input_proj = _image_parts(config, positions=not deformable)
    if config.queries == "selected":
        queries = SelectedQueries(config.num_queries, config.query_groups, dim, config.selected_content)
    else:
        queries = LearnedAnchors(config.num_queries, config.query_groups, dim)
    decoder = AnchorDecoder(dim, deformable)
    transformer = _transformer(config, deformable_levels=(2 if config.fine_level else 1) if deformable else 0)
    class_head = nn.Linear(dim, config.num_classes + 1)
    box_head = zero_last_layer(MLP(dim, dim, 4, 3))  # boxes start as the anchors; the head learns corrections
    scoring = ClassScoring(config.class_pairs)
    query_selection = None
    if config.queries == "selected":
        selection = CandidateQuerySelection if config.proposal_tokens == "candidates" else QuerySelection
        query_selection = selection(dim, config.num_classes, zero_last_layer(MLP(dim, dim, 4, 3)),
                                    config.distinct_queries, scoring)
    # Created last, as the model created its label embedding before it was composed of parts: a seed
    # gives the same initial weights as it did then.
    denoising = (DenoisingBranch(config.num_classes, dim, config.denoising_groups, config.denoising_box_noise,
                                 config.denoising_label_noise) if config.denoising_groups else None)
    return DETR(backbone, position_encoding, input_proj, transformer, queries, decoder, class_head, box_head,
                query_groups=config.query_groups, aux_loss=config.aux_loss, fine_level=fine_level,
                query_selection=query_selection, denoising=denoising, scoring=scoring, config=config)


def _image_parts(config: ModelConfig, positions: bool) -> tuple[Backbone, nn.Module, FineLevel | None, nn.Conv2d]:
    """The backbone (returning the stage before its last too when the fine level reads it), the
    position encoding, the fine level (or None; with token positions when the decoder reads them)
    and the projection to the model's width."""
    dim = config.hidden_dim
    stages = backbone_stages(config.backbone.last_layer, 2) if config.fine_level else ()
    backbone = Backbone(config.backbone, stages)
    position_encoding = POSITION_ENCODINGS[config.position_encoding](dim)
    fine_level = None
    if config.fine_level:
        make_mix = partial(FINE_LEVEL_MIXES[config.fine_level_mix], convs=config.fine_level_convs)
        fine_level = FineLevel(backbone.stage_channels[0], dim, make_mix, positions)
    return backbone, position_encoding, fine_level, nn.Conv2d(backbone.num_channels, dim, kernel_size=1)


def _transformer(config: ModelConfig, deformable_levels: int) -> Transformer:
    """deformable_levels > 0: the decoder's cross-attention samples on that many levels."""
    return Transformer(config.hidden_dim, config.num_heads, config.encoder_layers, config.decoder_layers,
                       config.feedforward_dim, config.dropout, config.pre_norm, deformable_levels,
                       config.deformable_points)
