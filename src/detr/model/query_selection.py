"""Two-stage query selection: encoder tokens propose boxes, the best become the anchors.

Every valid token of the encoder output predicts a class and a box relative
to a proposal at its own cell, one cell of its own level in size (Deformable
DETR's two-stage, DINO's query
selection). The top-scoring tokens' boxes, cut from the graph, are the
decoder's initial anchors; the proposals are trained by a set loss of their
own (the criterion's `enc_outputs`). With model.distinct_queries, the top
tokens are taken after class-agnostic NMS over the proposals (DDQ-DETR), so
that neighbouring tokens of one object do not become several queries. With
model.proposal_tokens="candidates" (CandidateQuerySelection), the proposals'
loss reads the tokens that could become queries alone, as RT-DETR's and DINO's.
"""

from __future__ import annotations

from typing import NamedTuple, TypeAlias

import torch
from torch import nn
from torchvision.ops import box_convert

from detr.model.anchor_decoder import inverse_sigmoid
from detr.model.outputs import TokenProposals
from detr.model.per_image_nms import per_image_nms
from detr.model.class_scoring import ClassScoring

def cell_proposals(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask [B, h, w] True on padding -> (boxes [B, h*w, 4] normalised cxcywh, valid [B, h*w]).

    Each cell's box is centred on it and one cell in size, measured in the
    image's unpadded part, so padding never moves a proposal.
    """
    batch, height, width = mask.shape
    valid_rows = (~mask[:, :, 0]).sum(1).clamp(min=1).float()  # [B]
    valid_cols = (~mask[:, 0, :]).sum(1).clamp(min=1).float()
    ys = torch.arange(height, device=mask.device, dtype=torch.float32) + 0.5
    xs = torch.arange(width, device=mask.device, dtype=torch.float32) + 0.5
    cy = ys[None, :, None] / valid_rows[:, None, None]
    cx = xs[None, None, :] / valid_cols[:, None, None]
    h = (1.0 / valid_rows)[:, None, None]
    w = (1.0 / valid_cols)[:, None, None]
    boxes = torch.stack(torch.broadcast_tensors(cx, cy, w, h), dim=-1).flatten(1, 2)
    return boxes, ~mask.flatten(1)


def level_proposals(feature_masks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """`cell_proposals` of each level's mask, the levels' tokens one after another as in the memory:
    (boxes [B, L, 4], valid [B, L])."""
    boxes, valid = zip(*map(cell_proposals, feature_masks))
    return torch.cat(boxes, dim=1), torch.cat(valid, dim=1)


# A padding token's box: off the image and tiny, so that no object is ever matched to it.
FAR_BOX = (-1.0, -1.0, 1e-3, 1e-3)


class TokenHeads(nn.Module):
    """Heads on the encoder output: per-token class logits [B, L, K+1] and a box [B, L, 4]
    relative to the token's own cell."""

    def __init__(self, dim: int, num_classes: int, box_head: nn.Module) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.class_head = nn.Linear(dim, num_classes + 1)
        self.box_head = box_head

    def predict(self, memory: torch.Tensor, feature_masks: list[torch.Tensor]
                ) -> tuple[TokenProposals, torch.Tensor, torch.Tensor]:
        """memory [B, L, D]; feature_masks: [B, h, w] per level (all False without padding),
        their tokens flattened one level after another in `memory`.

        Returns the proposals (padding tokens' boxes far off, so that they are never matched),
        the boxes [B, L, 4] in inverse-sigmoid space and the projected tokens [B, L, D].
        """
        cells, valid = level_proposals(feature_masks)
        tokens = self.project(memory)
        logits = self.class_head(tokens)
        box_logits = inverse_sigmoid(cells) + self.box_head(tokens)
        far = torch.tensor(FAR_BOX, device=memory.device, dtype=box_logits.dtype)
        boxes = torch.where(valid[..., None], box_logits.sigmoid(), far)
        return TokenProposals(logits, boxes, valid, cells), box_logits, tokens

    def forward(self, memory: torch.Tensor, feature_masks: list[torch.Tensor]) -> TokenProposals:
        return self.predict(memory, feature_masks)[0]


# NMS runs over this many candidates a query, the best-scored tokens: greedy NMS keeps a token or
# not by the better-scored ones alone, so the survivors among the candidates are those of NMS over
# every token, at a fraction of its quadratic cost (a stride-8 level holds over a thousand tokens).
CANDIDATES_PER_QUERY = 4


def distinct_top(scores: torch.Tensor, boxes: torch.Tensor, count: int, iou: float) -> torch.Tensor:
    """scores [B, L] (padding below 0), boxes [B, L, 4] normalised cxcywh -> the indices [B, count]
    of the best tokens that class-agnostic NMS at `iou` keeps, best first (DDQ-DETR), then, where
    fewer than `count` of the CANDIDATES_PER_QUERY x count best survive, the best suppressed ones
    among those. Padding comes last either way."""
    candidates = distinct_candidates(scores, count)
    candidate_boxes = boxes.gather(1, candidates[..., None].expand(-1, -1, 4))
    return candidates.gather(1, distinct_among(scores.gather(1, candidates), candidate_boxes, count, iou))


def distinct_candidates(scores: torch.Tensor, count: int) -> torch.Tensor:
    """The indices [B, C] of the CANDIDATES_PER_QUERY x count best tokens (all, if fewer), best first."""
    return best_tokens(scores, CANDIDATES_PER_QUERY * count)


def best_tokens(scores: torch.Tensor, size: int) -> torch.Tensor:
    """The indices [B, size] of the best-scored tokens (all, if fewer), best first; in float32, as
    bf16 scores tie more often."""
    return scores.detach().float().topk(min(scores.shape[1], size), dim=1).indices


def distinct_among(scores: torch.Tensor, boxes: torch.Tensor, count: int, iou: float) -> torch.Tensor:
    """`distinct_top` over candidates already drawn, best first: scores [B, C], boxes [B, C, 4]
    -> indices [B, count] into the candidates."""
    scores, boxes = scores.detach().float(), boxes.detach().float()
    kept = per_image_nms(box_convert(boxes, "cxcywh", "xyxy"), scores, iou)
    # Survivors rank above every suppressed token (scores are probabilities in [0, 1]); in float32,
    # as bf16 near 2 would round neighbouring scores into ties.
    ranked = scores + 2.0 * (kept & (scores >= 0))
    return ranked.topk(count, dim=1).indices


# The proposals' outputs (as the criterion takes them; None in eval mode), the chosen anchors [B, count, 4] in
# inverse-sigmoid space and the chosen tokens' projected features [B, count, D].
Selection: TypeAlias = tuple[TokenProposals | None, torch.Tensor, torch.Tensor]


class QuerySelection(TokenHeads):
    """The token heads, whose top-scoring tokens give the decoder's anchors."""

    def __init__(self, dim: int, num_classes: int, box_head: nn.Module, distinct_iou: float = 0.0,
                 scoring: ClassScoring = ClassScoring()) -> None:
        super().__init__(dim, num_classes, box_head)
        self.scoring = scoring  # a token's score: its best class's, as the decoder's queries score
        self.distinct_iou = distinct_iou  # model.distinct_queries

    def forward(self, memory: torch.Tensor, feature_masks: list[torch.Tensor], count: int) -> Selection:
        """As `TokenHeads`, for `count` queries: returns the proposals' outputs (None in eval mode,
        where nothing reads them), the chosen anchors [B, count, 4] in inverse-sigmoid space and the
        chosen tokens' projected features [B, count, D] (RT-DETR's content queries), both detached."""
        if count > memory.shape[1]:
            raise ValueError(f"{count} queries but the encoder has only {memory.shape[1]} tokens to choose "
                             "from; use larger images or fewer queries")
        if not self.training:
            return self._select(memory, feature_masks, count)
        proposals, box_logits, tokens = self.predict(memory, feature_masks)
        scores = self._scores(proposals.logits, proposals.valid)
        if self.distinct_iou:
            chosen = distinct_top(scores, proposals.boxes, count, self.distinct_iou)
        else:
            chosen = scores.topk(count, dim=1).indices
        return proposals, _rows(box_logits, chosen).detach(), _rows(tokens, chosen).detach()

    def _scores(self, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """A token's score [B, L]: its best class's probability, as the decoder's queries score; -1 on padding."""
        return self.scoring.probabilities(logits.detach()).amax(-1).masked_fill(~valid, -1.0)

    def _select(self, memory: torch.Tensor, feature_masks: list[torch.Tensor], count: int) -> Selection:
        """The same choice at inference, with the box head run on the candidate tokens alone (the
        proposals' loss is what reads every token's box): the default's forward on `general` val
        images took 0.93-0.98x the time at batch 1 and 0.95-0.98x at batch 8 (2 AMD EPYC vCPUs)."""
        drawn = self._draw(memory, feature_masks, count, CANDIDATES_PER_QUERY * count if self.distinct_iou else count)
        return None, drawn.anchors.detach(), drawn.features.detach()

    def _draw(self, memory: torch.Tensor, feature_masks: list[torch.Tensor], count: int, size: int) -> Drawn:
        """The `size` best-scored tokens (all, if fewer), their boxes from the box head run on them
        alone, and the `count` of them that become queries (after NMS among them with distinct_iou)."""
        cells, valid = level_proposals(feature_masks)
        tokens = self.project(memory)
        logits = self.class_head(tokens)
        scores = self._scores(logits, valid)
        candidates = best_tokens(scores, size)
        box_logits = inverse_sigmoid(_rows(cells, candidates)) + self.box_head(_rows(tokens, candidates))
        chosen, anchors = candidates[:, :count], box_logits[:, :count]  # the candidates come best first
        if self.distinct_iou:  # padding candidates rank last whatever their boxes: no far boxes needed
            order = distinct_among(scores.gather(1, candidates), box_logits.sigmoid(), count, self.distinct_iou)
            chosen, anchors = candidates.gather(1, order), _rows(box_logits, order)
        return Drawn(candidates, logits, box_logits, cells, valid, anchors, _rows(tokens, chosen))


class CandidateQuerySelection(QuerySelection):
    """Query selection whose proposals' loss reads the candidates alone: the CANDIDATES_PER_QUERY x
    count best-scored tokens of each image, as at inference (RT-DETR and DINO train the selected
    tokens alone). The box head runs on those tokens instead of every token, and the proposals'
    matching and loss cover a few hundred tokens instead of thousands; every token still gets a
    class score, as choosing the candidates needs it."""

    def forward(self, memory: torch.Tensor, feature_masks: list[torch.Tensor], count: int) -> Selection:
        if count > memory.shape[1] or not self.training:  # the parent's error, or its inference
            return super().forward(memory, feature_masks, count)
        drawn = self._draw(memory, feature_masks, count, CANDIDATES_PER_QUERY * count)
        valid = drawn.valid.gather(1, drawn.candidates)
        far = torch.tensor(FAR_BOX, device=memory.device, dtype=drawn.box_logits.dtype)
        boxes = torch.where(valid[..., None], drawn.box_logits.sigmoid(), far)
        proposals = TokenProposals(_rows(drawn.logits, drawn.candidates), boxes, valid,
                                   _rows(drawn.cells, drawn.candidates))
        return proposals, drawn.anchors.detach(), drawn.features.detach()


class Drawn(NamedTuple):
    """`QuerySelection._draw`'s result: the candidates' indices [B, C], every token's class logits
    [B, L, K+1], the candidates' boxes [B, C, 4] in inverse-sigmoid space, every token's cell
    [B, L, 4] and validity [B, L], and the chosen queries' anchors [B, count, 4] (inverse-sigmoid
    space) and projected features [B, count, D], not yet detached."""

    candidates: torch.Tensor
    logits: torch.Tensor
    box_logits: torch.Tensor
    cells: torch.Tensor
    valid: torch.Tensor
    anchors: torch.Tensor
    features: torch.Tensor


def _rows(x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """x [B, L, C] at indices [B, K] -> [B, K, C]."""
    return x.gather(1, indices[..., None].expand(-1, -1, x.shape[-1]))
