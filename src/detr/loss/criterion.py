"""The set-prediction loss: classification over all queries, boxes over matched pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, box_iou, generalized_box_iou_loss

from detr.config import LossConfig
from detr.distributed import world_size
from detr.loss.dense_assignment import centre_assignment
from detr.loss.matcher import HungarianMatcher, Match
from detr.model.class_scoring import ClassScoring
from detr.model.outputs import DenoisingOutput, DETROutput, Predictions, TokenProposals

# A second box on an object at this IoU is what the duplicate count (engine/box_counts.py) counts.
DUPLICATE_IOU = 0.5
# Each layer's loss terms, in the order of `_stacked_losses`'s rows.
_TERMS = ("loss_ce", "loss_bbox", "loss_giou")


def _to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host tensor to `device`; to a GPU through pinned memory, so the host does not wait."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class PendingNormalisers:
    """SetCriterion's normalisers on their way: `values`, summed over the processes once `work`
    (the all-reduce) is done; without `work`, one process's final values."""

    def __init__(self, values: torch.Tensor | tuple[float, float], work: torch.distributed.Work | None = None) -> None:
        self.values, self.work = values, work

    def wait(self) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        if self.work is None:
            return self.values
        self.work.wait()
        values = self.values / world_size()
        return values[0].clamp(min=1), values[1]


class SetCriterion(nn.Module):
    """DETR's loss, applied to the final output and to every auxiliary output.

    Returns a dict with `loss` (the weighted total to back-propagate), each
    weighted term per decoder layer (`loss_ce`, `loss_bbox`, `loss_giou`,
    suffixed `_0`, `_1`, ... for the auxiliary layers), and two logged-only
    metrics of the final layer: `class_error` (percent of matched queries
    with the wrong class) and `cardinality_error` (|#predicted objects −
    #targets| per image).

    With `iou_aware_classes`, a matched query's target is its box's IoU on its class and the
    rest on no-object (soft targets of the same cross-entropy).
    """

    def __init__(self, num_classes: int, config: LossConfig, queries_per_group: int | None = None,
                 scoring: ClassScoring = ClassScoring()) -> None:
        """queries_per_group: the model's num_queries, when it trains query groups (Group DETR):
        outputs with G times as many queries hold G groups. None: all queries are one group.
        scoring: the model's class-scoring rule, which the matcher's class cost and the
        cardinality metric read."""
        super().__init__()
        self.num_classes = num_classes
        self.config = config
        self.queries_per_group = queries_per_group
        self.scoring = scoring
        self.matcher = HungarianMatcher.from_config(config, scoring)
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = config.eos_coef
        self.register_buffer("class_weight", class_weight)

    def normalisers(self, targets: list[dict], num_queries: int,
                    device: torch.device) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """(target boxes, summed class weights of all queries): totals over processes
        divided by the process count (one all-reduce); the box count at least 1.

        Dividing local sums by these makes the per-process losses, averaged by
        DistributedDataParallel, equal the loss of one process on the global
        batch: for the box terms as in the paper's code, and for the
        classification term too (the reference averages that one per process).
        With gradient accumulation, `targets` are those of every micro-batch
        of the step. In one process they stay Python numbers: no transfer.
        """
        return self.start_normalisers(targets, num_queries, device).wait()

    def start_normalisers(self, targets: list[dict], num_queries: int, device: torch.device) -> PendingNormalisers:
        """`normalisers()` with the sum over the processes started, not awaited: the training step
        waits for it after its forward, which hides the collective's round trip."""
        boxes = float(sum(len(t["labels"]) for t in targets))
        # Every target is matched once, so the weight sum is the same for every decoder layer.
        weights = (len(targets) * num_queries - boxes) * self.config.eos_coef + boxes
        if world_size() == 1:
            return PendingNormalisers((max(boxes, 1.0), weights))
        values = torch.tensor([boxes, weights], device=device)
        return PendingNormalisers(values, torch.distributed.all_reduce(values, async_op=True))

    @staticmethod
    def _indices_on_device(matches: list[list[Match]], targets: list[dict],
                           device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per layer (image index, query index, index into the concatenated targets) of every
        matched pair, moved to the device in one (asynchronous on CUDA) transfer."""
        offsets = torch.tensor([0] + [len(t["labels"]) for t in targets]).cumsum(0).tolist()
        per_layer = []
        for layer in matches:
            image = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(layer)])
            query = torch.cat([q for q, _ in layer])
            target = torch.cat([j + offsets[i] for i, (_, j) in enumerate(layer)])
            per_layer.append(torch.stack([image, query, target]))
        packed = torch.cat(per_layer, dim=1)
        packed = _to_device_async(packed, device)
        return [tuple(part.unbind(0)) for part in packed.split([p.shape[1] for p in per_layer], dim=1)]

    def _layer_losses(self, outputs: Predictions, indices, target_labels: torch.Tensor, target_boxes: torch.Tensor,
                      num_boxes, class_weight_sum, valid: torch.Tensor | None = None,
                      target_images: torch.Tensor | None = None) -> dict:
        """The weighted-CE, L1 and GIoU terms of one layer's matched pairs `indices`.
        `valid` [B, N]: weights of the queries' classification terms (default: all 1).
        `target_images` [T]: each target's image, given for the decoder's layers when
        loss.duplicate_weight re-weights their unmatched queries that cover an object."""
        terms = self._stacked_losses([outputs], [indices], target_labels, target_boxes, num_boxes, class_weight_sum,
                                     valid, target_images)
        return dict(zip(_TERMS, terms[:, 0]))

    def _stacked_losses(self, layers: list[Predictions], indices: list, target_labels: torch.Tensor,
                        target_boxes: torch.Tensor, num_boxes, class_weight_sum, valid: torch.Tensor | None = None,
                        target_images: torch.Tensor | None = None) -> torch.Tensor:
        """`_layer_losses` of several layers of the same shape, each with its own matched pairs,
        in one pass over all of them (a few hundred operations a step fewer than one pass per
        layer). Returns [3, layers]: the CE, L1 and GIoU terms (`_TERMS`) of each layer."""
        count, batch = len(layers), layers[0].logits.shape[0]
        logits = torch.cat([layer.logits for layer in layers])  # [layers x B, N, K+1]
        boxes = torch.cat([layer.boxes for layer in layers])
        image = torch.cat([pairs[0] + k * batch for k, pairs in enumerate(indices)])
        query = torch.cat([pairs[1] for pairs in indices])
        target = torch.cat([pairs[2] for pairs in indices])
        pair_layer = torch.cat([torch.full_like(pairs[0], k) for k, pairs in enumerate(indices)])
        if valid is not None:
            valid = valid.repeat(count, 1)
        if target_images is not None and self.config.duplicate_weight is not None:
            weights = self._duplicate_weights(boxes, image, query, target_boxes, target_images, batch)
            valid = weights if valid is None else valid * weights
        matched_labels = target_labels[target]
        pred = boxes[image, query].float()
        matched_boxes = target_boxes[target]
        pred_xyxy, matched_xyxy = box_convert(pred, "cxcywh", "xyxy"), box_convert(matched_boxes, "cxcywh", "xyxy")

        if not self.config.iou_aware_classes and valid is None:  # the paper's loss
            target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64,
                                        device=logits.device)
            target_classes[image, query] = matched_labels
            per_query = F.cross_entropy(logits.transpose(1, 2).float(), target_classes, self.class_weight,
                                        reduction="none")
        else:
            # A matched query's target on its class: its box's IoU (IoU-aware), or 1.
            quality = (box_iou(pred_xyxy, matched_xyxy).diagonal().detach() if self.config.iou_aware_classes
                       else torch.ones_like(matched_labels, dtype=torch.float32))
            # Soft targets: the rest of a matched query's mass, and every other query, on no-object.
            soft = torch.zeros(*logits.shape, device=logits.device)
            soft[..., self.num_classes] = 1.0
            soft[image, query, self.num_classes] = 1.0 - quality
            soft[image, query, matched_labels] = quality
            per_query = F.cross_entropy(logits.transpose(1, 2).float(), soft.transpose(1, 2), self.class_weight,
                                        reduction="none")
            if valid is not None:
                per_query = per_query * valid
        loss_ce = per_query.view(count, -1).sum(1) / class_weight_sum
        pair_terms = torch.stack([F.l1_loss(pred, matched_boxes, reduction="none").sum(1),
                                  generalized_box_iou_loss(pred_xyxy, matched_xyxy, reduction="none")], dim=1)
        box_terms = pair_terms.new_zeros(count, 2).index_add_(0, pair_layer, pair_terms) / num_boxes
        return torch.cat([loss_ce[None], box_terms.t()])

    @torch.no_grad()
    def _duplicate_weights(self, boxes: torch.Tensor, image: torch.Tensor, query: torch.Tensor,
                           target_boxes: torch.Tensor, target_images: torch.Tensor, batch: int) -> torch.Tensor:
        """[E, N] for boxes [E, N, 4] of layers stacked in blocks of `batch` images:
        duplicate_weight / eos_coef on each unmatched query whose box covers an object of its
        image at IoU >= 0.5 (so that its no-object term weighs duplicate_weight), 1 elsewhere."""
        entries, count = boxes.shape[:2]
        iou = box_iou(box_convert(boxes.detach().flatten(0, 1).float(), "cxcywh", "xyxy"),
                      box_convert(target_boxes, "cxcywh", "xyxy"))
        image_of_row = (torch.arange(entries, device=boxes.device) % batch).repeat_interleave(count)
        own_image = image_of_row[:, None] == target_images
        covers = ((iou >= DUPLICATE_IOU) & own_image).any(1).view(entries, count)
        covers[image, query] = False
        scale = self.config.duplicate_weight / self.config.eos_coef
        return torch.where(covers, scale, 1.0)

    @torch.no_grad()
    def _metrics(self, outputs: Predictions, indices, target_labels: torch.Tensor, targets: list[dict]) -> dict:
        logits = outputs.logits
        image, query, target = indices
        if len(target):
            # IoU-aware targets put most of a loose box's mass on no-object by design: judge the
            # class among the real ones there, as the paper's argmax over all would read 100% error.
            soft = self.config.iou_aware_classes
            matched = logits[image, query][:, :-1] if soft else logits[image, query]
            correct = (matched.argmax(-1) == target_labels[target]).float().mean()
            class_error = 100 * (1 - correct)
        else:
            class_error = torch.zeros((), device=logits.device)
        predicted_objects = self.scoring.predicts_object(logits).sum(1).float()
        target_counts = torch.tensor([float(len(t["labels"])) for t in targets])
        target_counts = _to_device_async(target_counts, logits.device)
        return {"class_error": class_error, "cardinality_error": F.l1_loss(predicted_objects, target_counts)}

    def forward(self, outputs: DETROutput, targets: list[dict], normalisers=None) -> dict[str, torch.Tensor]:
        """targets: per image {"labels": int64 [T], "boxes": normalised cxcywh [T, 4]}, on the
        outputs' device. `normalisers`: from `normalisers()` over a whole accumulated step
        (default: over these targets). With query groups (Group DETR), each group of each
        layer is matched on its own and the groups' losses are averaged. Query selection's
        proposals (`outputs.proposals`, suffix `_enc`) are matched on their own too (or, with
        `dense_proposals`, paired with the objects they lie in), and denoising queries
        (`outputs.denoising`, suffix `_dn`) with the targets they were made from."""
        logits = outputs.logits
        num_queries = self.queries_per_group or logits.shape[1]
        groups, rest = divmod(logits.shape[1], num_queries)
        if rest:
            raise ValueError(f"the outputs' {logits.shape[1]} queries do not split into groups of {num_queries}: "
                             f"give SetCriterion the model's num_queries")
        num_boxes, class_weight_sum = normalisers or self.normalisers(targets, num_queries, logits.device)
        layers = [("", outputs)] + [(f"_{i}", aux) for i, aux in enumerate(outputs.aux)]
        # One entry per (layer, group), the final layer's first group first.
        group = [slice(g * num_queries, (g + 1) * num_queries) for g in range(groups)]
        entries = [(suffix, Predictions(layer.logits[:, part], layer.boxes[:, part]))
                   for suffix, layer in layers for part in group]
        matches = self.matcher.match_layers([entry for _, entry in entries], targets)
        indices = self._indices_on_device(matches, targets, logits.device)
        target_labels = torch.cat([t["labels"] for t in targets])
        target_boxes = torch.cat([t["boxes"] for t in targets]).float()
        target_images = torch.cat([torch.full_like(t["labels"], i) for i, t in enumerate(targets)])
        # Every (layer, group) entry in one pass: [3, entries].
        stacked = self._stacked_losses([entry for _, entry in entries], indices, target_labels, target_boxes,
                                       num_boxes, class_weight_sum, target_images=target_images)
        terms = [(stacked / groups, [suffix for suffix, _ in entries])]
        if outputs.proposals is not None:
            proposal_terms = self._proposal_losses(outputs.proposals, targets, target_labels, target_boxes, num_boxes)
            terms.append((torch.stack([proposal_terms[name] for name in _TERMS])[:, None], ["_enc"]))
        if outputs.denoising is not None:
            terms.append(self._denoising_losses(outputs.denoising, targets, target_labels, target_boxes, num_boxes))
        weights = torch.tensor([self.config.weight_ce, self.config.weight_bbox, self.config.weight_giou],
                               device=logits.device)
        # The total straight from the stacked terms: the per-key shares below are for the log.
        total = sum((weights[:, None] * values).sum() for values, _ in terms)
        result: dict[str, torch.Tensor] = {}
        for values, suffixes in terms:
            for column, suffix in enumerate(suffixes):
                for row, name in enumerate(_TERMS):
                    key = name + suffix
                    share = values[row, column]
                    result[key] = result[key] + share if key in result else share
        result.update(self._metrics(entries[0][1], indices[0], target_labels, targets))
        result["loss"] = total
        return result

    def _proposal_losses(self, proposals: TokenProposals, targets: list[dict], target_labels: torch.Tensor,
                         target_boxes: torch.Tensor, num_boxes) -> dict:
        """The set loss of query selection's per-token proposals; padding tokens do not count.
        Its classification normaliser is this process's own (valid tokens, weighted). With
        `dense_proposals`, every token inside an object learns it (`_dense_losses`)."""
        if self.config.dense_proposals:
            return self._dense_losses(proposals, targets, target_labels, target_boxes)
        indices = self._indices_on_device([self.matcher(proposals, targets)], targets, target_boxes.device)[0]
        valid = proposals.valid
        boxes = float(sum(len(t["labels"]) for t in targets))
        weight_sum = ((valid.sum() - boxes) * self.config.eos_coef + boxes).clamp(min=1)
        return self._layer_losses(proposals, indices, target_labels, target_boxes, num_boxes, weight_sum, valid)

    def _dense_losses(self, dense: TokenProposals, targets: list[dict], target_labels: torch.Tensor,
                      target_boxes: torch.Tensor) -> dict:
        """Dense proposals' loss, as an NMS detector's (Co-DETR's auxiliary head, FCOS's
        assignment): every token in an object's centre region learns
        it (`centre_assignment`), and the token the matcher picks for each object too, so
        that objects smaller than a cell still teach one. Normalised by this process's
        positive tokens; padding tokens do not count."""
        valid = dense.valid
        matches = self.matcher(dense, targets)
        offsets = torch.tensor([0] + [len(t["labels"]) for t in targets]).cumsum(0).tolist()
        images, tokens, owners = [], [], []
        for i, (target, (query, index)) in enumerate(zip(targets, matches)):
            assigned = torch.full((valid.shape[1],), -1, dtype=torch.int64, device=valid.device)
            token, owner = centre_assignment(dense.cells[i], valid[i], target["boxes"].float(),
                                             self.config.dense_radius)
            assigned[token] = owner
            assigned[query.to(valid.device)] = index.to(valid.device)
            positive = (assigned >= 0).nonzero(as_tuple=True)[0]
            images.append(torch.full_like(positive, i))
            tokens.append(positive)
            owners.append(assigned[positive] + offsets[i])
        indices = (torch.cat(images), torch.cat(tokens), torch.cat(owners))
        positives = float(len(indices[0]))
        weight_sum = ((valid.sum() - positives) * self.config.eos_coef + positives).clamp(min=1)
        return self._layer_losses(dense, indices, target_labels, target_boxes, max(positives, 1.0), weight_sum,
                                  valid)

    def _denoising_losses(self, dn: DenoisingOutput, targets: list[dict], target_labels: torch.Tensor,
                          target_boxes: torch.Tensor, num_boxes) -> tuple[torch.Tensor, list[str]]:
        """Each denoising query against the target it was made from, on every layer,
        averaged over the groups; queries that only pad the batch do not count."""
        groups, padding = dn.groups, dn.padding
        valid = ~padding
        entry, query = valid.nonzero(as_tuple=True)
        offsets = torch.tensor([0] + [len(t["labels"]) for t in targets], device=padding.device).cumsum(0)
        indices = (entry, query, offsets[entry // groups] + query)
        # Every valid query carries a real class (weight 1).
        weight_sum = (valid.sum() / groups).clamp(min=1e-6)
        layers = [dn] + list(dn.aux)
        stacked = self._stacked_losses(layers, [indices] * len(layers), target_labels, target_boxes, num_boxes,
                                       weight_sum, valid)
        return stacked / groups, ["_dn"] + [f"_dn_{i}" for i in range(len(dn.aux))]
