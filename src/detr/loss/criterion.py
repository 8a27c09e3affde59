"""The set-prediction loss: classification over all queries, boxes over matched pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou_loss

from detr.config import LossConfig
from detr.loss.matcher import HungarianMatcher, Match


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


class SetCriterion(nn.Module):
    """DETR's loss, applied to the final output and to every auxiliary output.

    Returns a dict with `loss` (the weighted total to back-propagate), each
    weighted term per decoder layer (`loss_ce`, `loss_bbox`, `loss_giou`,
    suffixed `_0`, `_1`, ... for the auxiliary layers), and two logged-only
    metrics of the final layer: `class_error` (percent of matched queries
    with the wrong class) and `cardinality_error` (|#predicted objects −
    #targets| per image).
    """

    def __init__(self, num_classes: int, config: LossConfig) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.config = config
        self.matcher = HungarianMatcher.from_config(config)
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = config.eos_coef
        self.register_buffer("class_weight", class_weight)

    def _normalisers(self, targets: list[dict], num_queries: int,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(target boxes, summed class weights of all queries): totals over processes
        divided by the process count (one all-reduce); the box count at least 1.

        Dividing local sums by these makes the per-process losses, averaged by
        DistributedDataParallel, equal the loss of one process on the global
        batch: for the box terms as in the paper's code, and for the
        classification term too (the reference averages that one per process).
        """
        boxes = float(sum(len(t["labels"]) for t in targets))
        # Every target is matched once, so the weight sum is the same for every decoder layer.
        weights = (len(targets) * num_queries - boxes) * self.config.eos_coef + boxes
        values = torch.tensor([boxes, weights], device=device)
        world = _world_size()
        if world > 1:
            torch.distributed.all_reduce(values)
        values = values / world
        return values[0].clamp(min=1), values[1]

    def _layer_losses(self, outputs: dict, targets: list[dict], matches: list[Match], num_boxes,
                      class_weight_sum, with_metrics: bool) -> dict:
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        device = logits.device
        batch_idx = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)]).to(device)
        query_idx = torch.cat([q for q, _ in matches]).to(device)
        matched_labels = torch.cat([t["labels"][j.to(t["labels"].device)] for t, (_, j) in zip(targets, matches)])
        matched_labels = matched_labels.to(device)

        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=device)
        target_classes[batch_idx, query_idx] = matched_labels
        loss_ce = F.cross_entropy(logits.transpose(1, 2).float(), target_classes, self.class_weight,
                                  reduction="sum") / class_weight_sum

        pred = boxes[batch_idx, query_idx].float()
        target = torch.cat([t["boxes"][j.to(t["boxes"].device)] for t, (_, j) in zip(targets, matches)])
        target = target.to(device).float()
        loss_bbox = F.l1_loss(pred, target, reduction="sum") / num_boxes
        loss_giou = (
            generalized_box_iou_loss(
                box_convert(pred, "cxcywh", "xyxy"), box_convert(target, "cxcywh", "xyxy"), reduction="sum"
            )
            / num_boxes
        )
        losses = {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
        if not with_metrics:
            return losses
        with torch.no_grad():
            if len(matched_labels):
                correct = (logits[batch_idx, query_idx].argmax(-1) == matched_labels).float().mean()
                losses["class_error"] = 100 * (1 - correct)
            else:
                losses["class_error"] = torch.zeros((), device=device)
            predicted_objects = (logits.argmax(-1) != self.num_classes).sum(1).float()
            target_counts = torch.tensor([float(len(t["labels"])) for t in targets], device=device)
            losses["cardinality_error"] = F.l1_loss(predicted_objects, target_counts)
        return losses

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        """targets: per image {"labels": int64 [T], "boxes": normalised cxcywh [T, 4]}."""
        logits = outputs["pred_logits"]
        num_boxes, class_weight_sum = self._normalisers(targets, logits.shape[1], logits.device)
        weights = {"loss_ce": self.config.weight_ce, "loss_bbox": self.config.weight_bbox,
                   "loss_giou": self.config.weight_giou}
        layers = [("", outputs)] + [(f"_{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs", []))]
        result: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=logits.device)
        for suffix, layer_outputs in layers:
            matches = self.matcher(layer_outputs, targets)
            losses = self._layer_losses(layer_outputs, targets, matches, num_boxes, class_weight_sum,
                                        with_metrics=not suffix)
            for name, weight in weights.items():
                total = total + weight * losses[name]
                result[name + suffix] = losses[name]
            if not suffix:
                result["class_error"] = losses["class_error"]
                result["cardinality_error"] = losses["cardinality_error"]
        result["loss"] = total
        return result
