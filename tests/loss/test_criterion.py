import dataclasses
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou

from detr.config import LossConfig
from detr.loss import SetCriterion
from detr.model.outputs import DETROutput, DenoisingOutput, TokenProposals

NUM_CLASSES = 3


def _targets():
    return [
        {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.4]])},
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.4, 0.5, 0.3]])},
    ]


def _outputs(batch=2, queries=5, aux=0):
    def one():
        return DETROutput(torch.randn(batch, queries, NUM_CLASSES + 1), torch.rand(batch, queries, 4) * 0.4 + 0.3)
    out = one()
    out.aux = [one() for _ in range(aux)]
    return out


def test_layers_in_one_pass_give_each_layer_its_own_loss_with_the_defaults_terms():
    """IoU-aware classes and duplicate weights: the layers are stacked into one pass, and each
    layer's terms must still be those of that layer alone, duplicates judged in its own image."""
    from detr.config import preset
    config = preset("fast_fine").loss
    assert config.iou_aware_classes and config.duplicate_weight is not None
    criterion = SetCriterion(NUM_CLASSES, config)
    torch.manual_seed(0)
    outputs, targets = _outputs(aux=2), _targets()
    for layer in [outputs, *outputs.aux]:  # second boxes on image 0's first object in every layer
        layer.boxes[0, 1:3] = targets[0]["boxes"][0]
    losses = criterion(outputs, targets)
    alone = [criterion(DETROutput(layer.logits, layer.boxes), targets) for layer in [outputs, *outputs.aux]]
    for suffix, layer in zip(["", "_0", "_1"], alone):
        for name in ("loss_ce", "loss_bbox", "loss_giou"):
            torch.testing.assert_close(losses[name + suffix], layer[name])
    torch.testing.assert_close(losses["loss"], sum(layer["loss"] for layer in alone))


def test_values_match_a_direct_torchvision_computation():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    outputs, targets = _outputs(), _targets()
    losses = criterion(outputs, targets)
    matches = criterion.matcher(outputs, targets)

    target_classes = torch.full((2, 5), NUM_CLASSES)
    l1, giou, count = 0.0, 0.0, 3
    for b, (rows, cols) in enumerate(matches):
        target_classes[b, rows] = targets[b]["labels"][cols]
        pred = outputs.boxes[b, rows]
        gt = targets[b]["boxes"][cols]
        l1 += (pred - gt).abs().sum()
        giou += (1 - torch.diag(generalized_box_iou(box_convert(pred, "cxcywh", "xyxy"),
                                                    box_convert(gt, "cxcywh", "xyxy")))).sum()
    weight = torch.tensor([1.0, 1.0, 1.0, 0.1])
    ce = F.cross_entropy(outputs.logits.reshape(-1, 4), target_classes.reshape(-1), weight)
    torch.testing.assert_close(losses["loss_ce"], ce)
    torch.testing.assert_close(losses["loss_bbox"], l1 / count)
    torch.testing.assert_close(losses["loss_giou"], giou / count)
    torch.testing.assert_close(losses["loss"], ce + 5 * l1 / count + 2 * giou / count)


def test_aux_outputs_add_their_own_terms():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    outputs = _outputs(aux=2)
    losses = criterion(outputs, _targets())
    assert {"loss_ce_0", "loss_bbox_1", "loss_giou_1"} <= set(losses)
    final = criterion(DETROutput(outputs.logits, outputs.boxes), _targets())["loss"]
    aux = [criterion(a, _targets())["loss"] for a in outputs.aux]
    torch.testing.assert_close(losses["loss"], final + sum(aux))


def test_invariant_to_permuting_queries():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    outputs, targets = _outputs(queries=7), _targets()
    perm = torch.randperm(7)
    permuted = DETROutput(outputs.logits[:, perm], outputs.boxes[:, perm])
    a, b = criterion(outputs, targets), criterion(permuted, targets)
    for name in ("loss", "loss_ce", "loss_bbox", "loss_giou"):
        torch.testing.assert_close(a[name], b[name])


def test_near_perfect_predictions_give_near_zero_box_loss():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    targets = _targets()
    boxes = torch.rand(2, 5, 4) * 0.4 + 0.3
    logits = torch.full((2, 5, NUM_CLASSES + 1), -10.0)
    logits[..., -1] = 10.0
    for b, t in enumerate(targets):
        n = len(t["labels"])
        boxes[b, :n] = t["boxes"] + 1e-5
        logits[b, torch.arange(n), t["labels"]] = 20.0
    losses = criterion(DETROutput(logits, boxes), targets)
    assert losses["loss_bbox"] < 1e-3 and losses["loss_giou"] < 1e-3 and losses["loss_ce"] < 1e-3
    assert losses["class_error"] == 0 and losses["cardinality_error"] == 0


def test_image_without_objects_trains_toward_no_object():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    logits = torch.zeros(1, 4, NUM_CLASSES + 1, requires_grad=True)
    outputs = DETROutput(logits, torch.rand(1, 4, 4) * 0.4 + 0.3)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    losses = criterion(outputs, empty)
    assert losses["loss_bbox"] == 0 and losses["loss_giou"] == 0
    losses["loss"].backward()
    # Gradient descent raises the no-object logit and lowers the others.
    assert (logits.grad[..., -1] < 0).all() and (logits.grad[..., :-1] > 0).all()


def test_degenerate_predicted_boxes_do_not_crash():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    boxes = torch.rand(2, 5, 4) * 0.4 + 0.3
    boxes[..., 2] = 0.0  # zero width everywhere
    boxes.requires_grad_(True)
    losses = criterion(DETROutput(torch.randn(2, 5, 4), boxes), _targets())
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert torch.isfinite(boxes.grad).all()


def test_normalisers_count_boxes_and_class_weights():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    boxes, weights = criterion.normalisers(_targets(), 5, torch.device("cpu"))
    assert boxes == 3 and weights == pytest.approx(3 + 7 * 0.1)
    boxes, weights = criterion.normalisers([{"labels": torch.zeros(0)}], 5, torch.device("cpu"))
    assert boxes == 1 and weights == pytest.approx(0.5)  # no boxes: 5 no-object queries at 0.1


def _matched_outputs_and_criterion(**loss):
    criterion = SetCriterion(NUM_CLASSES, LossConfig(**loss))
    outputs, targets = _outputs(), _targets()
    indices = criterion._indices_on_device([criterion.matcher(outputs, targets)], targets, torch.device("cpu"))[0]
    labels = torch.cat([t["labels"] for t in targets])
    boxes = torch.cat([t["boxes"] for t in targets])
    return criterion, outputs, indices, labels, boxes


def test_the_soft_target_path_with_full_quality_is_the_paper_cross_entropy():
    criterion, outputs, indices, labels, boxes = _matched_outputs_and_criterion()
    paper = criterion._layer_losses(outputs, indices, labels, boxes, 3.0, 4.0)
    soft = criterion._layer_losses(outputs, indices, labels, boxes, 3.0, 4.0, valid=torch.ones(2, 5))
    torch.testing.assert_close(soft["loss_ce"], paper["loss_ce"])


def test_iou_aware_targets_put_the_box_iou_on_the_class_and_the_rest_on_no_object():
    criterion, outputs, indices, labels, boxes = _matched_outputs_and_criterion(iou_aware_classes=True)
    image, query, target = indices
    from torchvision.ops import box_iou
    iou = box_iou(box_convert(outputs.boxes[image, query], "cxcywh", "xyxy"),
                  box_convert(boxes[target], "cxcywh", "xyxy")).diagonal()
    logp = outputs.logits.log_softmax(-1)
    weight = torch.tensor([1.0, 1.0, 1.0, 0.1])
    expected = -(logp[..., NUM_CLASSES] * weight[-1]).sum()  # every query: no-object, weight 0.1 ...
    for i, q, t, quality in zip(image, query, target, iou):  # ... except the matched ones
        expected += logp[i, q, NUM_CLASSES] * weight[-1]
        expected -= quality * logp[i, q, labels[t]] + (1 - quality) * weight[-1] * logp[i, q, NUM_CLASSES]
    losses = criterion._layer_losses(outputs, indices, labels, boxes, 3.0, 4.0)
    torch.testing.assert_close(losses["loss_ce"], expected / 4.0)


def test_denoising_queries_are_paired_with_the_targets_they_came_from():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    targets = _targets()
    # Two groups; image 1 has one target, so its second query pads. Perfect boxes: no box loss.
    boxes = torch.zeros(4, 2, 4) + 0.5
    boxes[0:2, :2] = targets[0]["boxes"]
    boxes[2:4, 0] = targets[1]["boxes"][0]
    padding = torch.tensor([[False, False]] * 2 + [[False, True]] * 2)
    logits = torch.randn(4, 2, NUM_CLASSES + 1)
    losses = criterion(dataclasses.replace(_outputs(), denoising=DenoisingOutput(logits, boxes, [], padding, 2)),
                       targets)
    assert losses["loss_bbox_dn"] < 1e-5 and losses["loss_giou_dn"] < 1e-5
    logp = logits.log_softmax(-1)
    expected = -(logp[0, 0, 0] + logp[0, 1, 2] + logp[1, 0, 0] + logp[1, 1, 2] + logp[2, 0, 1] + logp[3, 0, 1]) / 6
    torch.testing.assert_close(losses["loss_ce_dn"], expected)


def test_proposals_on_padding_tokens_do_not_count():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    boxes = torch.rand(2, 6, 4) * 0.4 + 0.3
    proposals = TokenProposals(torch.randn(2, 6, NUM_CLASSES + 1), boxes,
                               torch.tensor([[True] * 6, [True] * 4 + [False] * 2]), torch.zeros_like(boxes))
    first = criterion(dataclasses.replace(_outputs(), proposals=proposals), _targets())["loss_ce_enc"]
    proposals.logits[1, 4:] = 100.0  # padding tokens' scores change nothing
    second = criterion(dataclasses.replace(_outputs(), proposals=proposals), _targets())["loss_ce_enc"]
    assert torch.isfinite(first)
    torch.testing.assert_close(first, second)


def test_class_error_with_iou_aware_targets_judges_the_real_classes():
    """Matched queries whose best real class is right count as right even where no-object,
    which IoU-aware targets favour for loose boxes, holds the largest logit; the paper's
    metric (argmax over all) counts them as wrong."""
    targets = _targets()
    boxes = torch.rand(2, 5, 4) * 0.4 + 0.3
    logits = torch.full((2, 5, NUM_CLASSES + 1), -10.0)
    logits[..., -1] = 10.0  # no-object leads everywhere
    for b, t in enumerate(targets):
        n = len(t["labels"])
        boxes[b, :n] = t["boxes"]
        logits[b, torch.arange(n), t["labels"]] = 5.0  # the right real class, below no-object
    outputs = DETROutput(logits, boxes)
    assert SetCriterion(NUM_CLASSES, LossConfig(iou_aware_classes=True))(outputs, targets)["class_error"] == 0
    assert SetCriterion(NUM_CLASSES, LossConfig())(outputs, targets)["class_error"] == 100


def test_dense_proposals_loss_matches_a_hand_computation():
    """4x4 cells of 0.25: the large object's centre region holds tokens 5, 6, 9, 10; the tiny
    one lies between cell centres, so only the matcher's token (0, whose box is exactly it)
    learns it. Every other token learns no-object; padding would not count."""
    cells = torch.tensor([[(c + 0.5) / 4, (r + 0.5) / 4, 0.25, 0.25] for r in range(4) for c in range(4)])
    boxes = torch.rand(1, 16, 4, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.7  # far from both
    large, tiny = [0.5, 0.5, 0.5, 0.5], [0.1, 0.1, 0.05, 0.05]
    boxes[0, 5], boxes[0, 0] = torch.tensor(large) + 0.01, torch.tensor(tiny)
    logits = torch.randn(1, 16, NUM_CLASSES + 1)
    dense = TokenProposals(logits, boxes, torch.ones(1, 16, dtype=torch.bool), cells[None])
    targets = [{"labels": torch.tensor([2, 0]), "boxes": torch.tensor([large, tiny])}]
    losses = SetCriterion(NUM_CLASSES, LossConfig(dense_proposals=True))(dataclasses.replace(_outputs(batch=1), proposals=dense),
                                                                        targets)

    owner = {5: 0, 6: 0, 9: 0, 10: 0, 0: 1}
    tokens, wanted = list(owner), targets[0]["boxes"][list(owner.values())]
    pred = boxes[0, tokens]
    expected_l1 = F.l1_loss(pred, wanted, reduction="sum") / 5
    giou = generalized_box_iou(box_convert(pred, "cxcywh", "xyxy"), box_convert(wanted, "cxcywh", "xyxy")).diagonal()
    logp = logits[0].log_softmax(-1)
    ce = sum(-logp[t, targets[0]["labels"][o]] for t, o in owner.items())
    ce = ce + sum(-0.1 * logp[t, NUM_CLASSES] for t in range(16) if t not in owner)
    torch.testing.assert_close(losses["loss_bbox_enc"], expected_l1)
    torch.testing.assert_close(losses["loss_giou_enc"], (1 - giou).sum() / 5)
    torch.testing.assert_close(losses["loss_ce_enc"], ce / (11 * 0.1 + 5))
