"""The set criterion's terms beyond the paper's defaults: configured loss weights, the logged
metrics, query groups, given normalisers, the multi-process normalisers, query selection's
proposals and the denoising layers. Each expected value is written per element here
(log-softmax entries, |a - b| sums, torchvision's GIoU), not taken from the criterion."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torchvision.ops import box_convert, generalized_box_iou

import detr.loss.criterion as criterion_module
from detr.config import LossConfig
from detr.loss import SetCriterion
from detr.model.outputs import DETROutput, DenoisingOutput, Predictions, TokenProposals

NUM_CLASSES = 3
EOS = 0.1


def _targets():
    return [
        {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.4]])},
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.4, 0.5, 0.3]])},
    ]


def _outputs(seed: int, batch: int = 2, queries: int = 5):
    generator = torch.Generator().manual_seed(seed)
    return DETROutput(2 * torch.randn(batch, queries, NUM_CLASSES + 1, generator=generator),
                      torch.rand(batch, queries, 4, generator=generator) * 0.4 + 0.3)


def _proposals(outputs: DETROutput, valid: torch.Tensor) -> TokenProposals:
    return TokenProposals(outputs.logits, outputs.boxes, valid, torch.zeros_like(outputs.boxes))


def _reference_terms(outputs, targets, matches, num_boxes, weight_sum, valid=None):
    """(ce, l1, giou) by hand: every query's weighted -log p of its target class (no-object
    at EOS unless matched), |pred - target| summed, 1 - GIoU summed."""
    logp = outputs.logits.log_softmax(-1)
    ce = l1 = giou = torch.zeros(())
    for b, (rows, cols) in enumerate(matches):
        owner = dict(zip(rows.tolist(), cols.tolist()))
        for q in range(logp.shape[1]):
            if valid is not None and not valid[b, q]:
                continue
            if q in owner:
                ce = ce - logp[b, q, targets[b]["labels"][owner[q]]]
            else:
                ce = ce - EOS * logp[b, q, NUM_CLASSES]
        for q, t in owner.items():
            pred, gt = outputs.boxes[b, q], targets[b]["boxes"][t]
            l1 = l1 + (pred - gt).abs().sum()
            giou = giou + 1 - generalized_box_iou(box_convert(pred[None], "cxcywh", "xyxy"),
                                                  box_convert(gt[None], "cxcywh", "xyxy"))[0, 0]
    return ce / weight_sum, l1 / num_boxes, giou / num_boxes


def test_the_total_uses_the_configured_loss_weights_and_the_terms_are_unweighted():
    config = LossConfig(weight_ce=0.3, weight_bbox=1.7, weight_giou=0.9)
    criterion = SetCriterion(NUM_CLASSES, config)
    outputs, targets = _outputs(0), _targets()
    losses = criterion(outputs, targets)
    ce, l1, giou = _reference_terms(outputs, targets, criterion.matcher(outputs, targets), 3.0, 3 + 7 * EOS)
    torch.testing.assert_close(losses["loss_ce"], ce)
    torch.testing.assert_close(losses["loss_bbox"], l1)
    torch.testing.assert_close(losses["loss_giou"], giou)
    torch.testing.assert_close(losses["loss"], 0.3 * ce + 1.7 * l1 + 0.9 * giou)


def test_class_error_and_cardinality_error_by_hand():
    """class_error: percent of matched queries whose argmax (no-object included) is not the
    target's class; cardinality_error: mean over images of |#queries not arguing no-object - #targets|."""
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    outputs, targets = _outputs(1, queries=6), _targets()
    outputs.logits[0, :, NUM_CLASSES] -= 3.0  # image 0 predicts many objects, image 1 few
    outputs.logits[1, :, NUM_CLASSES] += 2.0
    losses = criterion(outputs, targets)
    argmax = outputs.logits.argmax(-1)
    wrong = matched = 0
    for b, (rows, cols) in enumerate(criterion.matcher(outputs, targets)):
        for q, t in zip(rows.tolist(), cols.tolist()):
            matched += 1
            wrong += int(argmax[b, q] != targets[b]["labels"][t])
    assert 0 < wrong < matched  # the case distinguishes right from wrong
    torch.testing.assert_close(losses["class_error"], torch.tensor(100.0 * wrong / matched))
    predicted = [(argmax[b] != NUM_CLASSES).sum().item() for b in range(2)]
    expected = (abs(predicted[0] - 2) + abs(predicted[1] - 1)) / 2
    assert predicted[0] != 2 or predicted[1] != 1
    torch.testing.assert_close(losses["cardinality_error"], torch.tensor(float(expected)))


def test_without_targets_the_class_error_is_zero_and_every_query_learns_no_object():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    outputs = _outputs(2)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    losses = criterion(outputs, empty)
    assert losses["class_error"] == 0
    logp = outputs.logits.log_softmax(-1)
    # All 10 queries at weight EOS: the normaliser is 10 * EOS and the loss the mean -log p(no-object).
    torch.testing.assert_close(losses["loss_ce"], -(EOS * logp[..., NUM_CLASSES]).sum() / (10 * EOS))
    predicted = (outputs.logits.argmax(-1) != NUM_CLASSES).sum(1).float()
    torch.testing.assert_close(losses["cardinality_error"], predicted.mean())


def test_given_normalisers_replace_the_local_counts():
    """Gradient accumulation passes the whole step's (boxes, class weights)."""
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    outputs, targets = _outputs(3), _targets()
    losses = criterion(outputs, targets, normalisers=(6.0, 8.0))
    ce, l1, giou = _reference_terms(outputs, targets, criterion.matcher(outputs, targets), 6.0, 8.0)
    torch.testing.assert_close(losses["loss_ce"], ce)
    torch.testing.assert_close(losses["loss_bbox"], l1)
    torch.testing.assert_close(losses["loss_giou"], giou)


def test_query_groups_are_matched_apart_and_averaged():
    """Group DETR: 2 x 4 queries are two independent sets of 4; each group is the one-group
    loss of its own queries, and the reported terms are the groups' mean."""
    criterion = SetCriterion(NUM_CLASSES, LossConfig(), queries_per_group=4)
    outputs, targets = _outputs(4, queries=8), _targets()
    losses = criterion(outputs, targets)
    single = SetCriterion(NUM_CLASSES, LossConfig())
    expected = {"loss_ce": 0.0, "loss_bbox": 0.0, "loss_giou": 0.0}
    for g in range(2):
        group = DETROutput(outputs.logits[:, 4 * g:4 * (g + 1)], outputs.boxes[:, 4 * g:4 * (g + 1)])
        terms = _reference_terms(group, targets, single.matcher(group, targets), 3.0, 3 + 5 * EOS)
        for name, value in zip(expected, terms):
            expected[name] += value / 2
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value)
    torch.testing.assert_close(losses["loss"], expected["loss_ce"] + 5 * expected["loss_bbox"]
                               + 2 * expected["loss_giou"])


def test_outputs_that_do_not_split_into_groups_are_a_clear_error():
    criterion = SetCriterion(NUM_CLASSES, LossConfig(), queries_per_group=4)
    with pytest.raises(ValueError, match="the outputs' 6 queries do not split into groups of 4"):
        criterion(_outputs(5, queries=6), _targets())


class _FakeProcessGroup:
    """Another process holding `other` (boxes, class weights): all_reduce sums them in, at once
    or (async_op) when its work is waited for."""

    def __init__(self, other):
        self.other = torch.tensor(other)

    def all_reduce(self, tensor, async_op=False):
        work = SimpleNamespace(wait=lambda: tensor.add_(self.other))
        if not async_op:
            work.wait()
        return work if async_op else None


@pytest.mark.parametrize("other", [(3.0, 3.7), (0.0, 0.5), (5.0, 5.0)])
def test_normalisers_across_processes_are_the_mean_of_each_process_counts(monkeypatch, other):
    monkeypatch.setattr(criterion_module, "world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", _FakeProcessGroup(other).all_reduce)
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    boxes, weights = criterion.normalisers(_targets(), 5, torch.device("cpu"))
    assert float(boxes) == pytest.approx((3 + other[0]) / 2)
    assert float(weights) == pytest.approx((3 + 7 * EOS + other[1]) / 2)
    empty = [{"labels": torch.zeros(0, dtype=torch.int64)}]
    monkeypatch.setattr(torch.distributed, "all_reduce", _FakeProcessGroup((0.0, 0.5)).all_reduce)
    boxes, weights = criterion.normalisers(empty, 5, torch.device("cpu"))
    assert float(boxes) == 1.0 and float(weights) == pytest.approx(0.5)  # no box anywhere: at least 1


def test_query_selection_proposals_by_hand():
    """Proposals are matched with padding excluded; their classification term counts valid
    tokens only, normalised by those tokens' class weights; boxes by the batch's box count."""
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    proposals = _proposals(_outputs(6, queries=7), torch.tensor([[True] * 7, [True] * 5 + [False] * 2]))
    targets = _targets()
    losses = criterion(dataclasses.replace(_outputs(7), proposals=proposals), targets)
    matches = criterion.matcher(proposals, targets)
    for b, (rows, _) in enumerate(matches):
        assert proposals.valid[b, rows].all()
    weight_sum = (12 - 3) * EOS + 3
    ce, l1, giou = _reference_terms(proposals, targets, matches, 3.0, weight_sum, valid=proposals.valid)
    torch.testing.assert_close(losses["loss_ce_enc"], ce)
    torch.testing.assert_close(losses["loss_bbox_enc"], l1)
    torch.testing.assert_close(losses["loss_giou_enc"], giou)
    final = criterion(_outputs(7), targets)
    torch.testing.assert_close(losses["loss"], final["loss"] + ce + 5 * l1 + 2 * giou)


def test_denoising_auxiliary_layers_get_their_own_terms():
    """Each denoising layer is scored like the last one, under its own suffix, and all of
    them add to the total."""
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    targets = _targets()
    padding = torch.tensor([[False, False]] * 2 + [[False, True]] * 2)

    def layer(seed):
        generator = torch.Generator().manual_seed(seed)
        return Predictions(torch.randn(4, 2, NUM_CLASSES + 1, generator=generator),
                           torch.rand(4, 2, 4, generator=generator) * 0.4 + 0.3)

    def denoising(last, aux):
        return dataclasses.replace(_outputs(10), denoising=DenoisingOutput(last.logits, last.boxes, aux, padding, 2))

    dn = DenoisingOutput(layer(8).logits, layer(8).boxes, [layer(9)], padding, 2)
    with_aux = criterion(denoising(layer(8), [layer(9)]), targets)
    last_only = criterion(denoising(layer(8), []), targets)
    aux_alone = criterion(denoising(layer(9), []), targets)
    for name in ("loss_ce", "loss_bbox", "loss_giou"):
        torch.testing.assert_close(with_aux[name + "_dn"], last_only[name + "_dn"])
        torch.testing.assert_close(with_aux[name + "_dn_0"], aux_alone[name + "_dn"])
    torch.testing.assert_close(with_aux["loss"], last_only["loss"] + aux_alone["loss"] - criterion(_outputs(10),
                                                                                                 targets)["loss"])
    # The denoising pairs by hand: group g of image i is entry 2i + g, its query q the target q.
    logp, boxes = dn.aux[0].logits.log_softmax(-1), dn.aux[0].boxes
    pairs = [(0, 0, 0, 0), (0, 1, 0, 1), (1, 0, 0, 0), (1, 1, 0, 1), (2, 0, 1, 0), (3, 0, 1, 0)]
    ce = -sum(logp[e, q, targets[i]["labels"][t]] for e, q, i, t in pairs) / 6
    l1 = sum((boxes[e, q] - targets[i]["boxes"][t]).abs().sum() for e, q, i, t in pairs) / 3 / 2
    torch.testing.assert_close(with_aux["loss_ce_dn_0"], ce)
    torch.testing.assert_close(with_aux["loss_bbox_dn_0"], l1)


def test_matched_indices_are_moved_to_the_outputs_device():
    """The matcher solves on the host; its indices must reach the outputs' device (the meta
    device stands in for an accelerator here)."""
    moved = criterion_module._to_device_async(torch.tensor([1, 2]), torch.device("meta"))
    assert moved.device.type == "meta" and moved.shape == (2,)


def test_proposals_of_a_small_map_are_normalised_by_their_own_class_weights():
    """One object on a 4-token map: the class weights sum to 3 x 0.1 + 1 = 1.3, not more."""
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    proposals = _proposals(_outputs(11, batch=1, queries=4), torch.ones(1, 4, dtype=torch.bool))
    targets = _targets()[1:]
    losses = criterion(dataclasses.replace(_outputs(12, batch=1), proposals=proposals), targets)
    ce, _, _ = _reference_terms(proposals, targets, criterion.matcher(proposals, targets), 1.0, 3 * EOS + 1)
    torch.testing.assert_close(losses["loss_ce_enc"], ce)


@pytest.mark.parametrize("iou_aware", [False, True])
def test_duplicate_weight_weighs_the_no_object_term_of_unmatched_queries_covering_an_object(iou_aware):
    """One object; query 0 sits on it (matched), query 1 covers it at IoU 0.6 (a would-be
    duplicate), query 2 at IoU 0.4 (not one), query 3 far away. Only query 1's no-object term
    weighs duplicate_weight instead of EOS; the normaliser stays the paper's."""
    box = [0.5, 0.5, 0.4, 0.4]
    # Widening the box by a factor f gives IoU 1/f: 0.6 and 0.4.
    boxes = torch.tensor([[box, [0.5, 0.5, 0.4 / 0.6 ** 0.5, 0.4 / 0.6 ** 0.5],
                           [0.5, 0.5, 0.4 / 0.4 ** 0.5, 0.4 / 0.4 ** 0.5], [0.1, 0.1, 0.05, 0.05]]])
    logits = 2 * torch.randn(1, 4, NUM_CLASSES + 1, generator=torch.Generator().manual_seed(3))
    targets = [{"labels": torch.tensor([2]), "boxes": torch.tensor([box])}]
    config = LossConfig(cost_class=0.0, duplicate_weight=0.7, iou_aware_classes=iou_aware)
    loss = SetCriterion(NUM_CLASSES, config)(DETROutput(logits, boxes), targets)["loss_ce"]

    logp = logits[0].log_softmax(-1)
    expected = -logp[0, 2]  # matched, IoU 1 with its object: the whole target on its class
    expected = expected - 0.7 * logp[1, NUM_CLASSES] - EOS * logp[2, NUM_CLASSES] - EOS * logp[3, NUM_CLASSES]
    weight_sum = 1 + 3 * EOS
    torch.testing.assert_close(loss, expected / weight_sum, rtol=1e-5, atol=1e-6)


def test_duplicate_weight_leaves_proposals_and_denoising_alone():
    outputs = _outputs(4)
    valid = torch.ones(2, 5, dtype=torch.bool)
    outputs = dataclasses.replace(outputs, proposals=_proposals(_outputs(5), valid))
    plain = SetCriterion(NUM_CLASSES, LossConfig())(outputs, _targets())
    hard = SetCriterion(NUM_CLASSES, LossConfig(duplicate_weight=1.0))(outputs, _targets())
    assert torch.equal(plain["loss_ce_enc"], hard["loss_ce_enc"])
