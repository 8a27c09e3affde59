import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, generalized_box_iou

from detr.config import LossConfig
from detr.loss import SetCriterion

NUM_CLASSES = 3


def _targets():
    return [
        {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.4]])},
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.4, 0.5, 0.3]])},
    ]


def _outputs(batch=2, queries=5, aux=0):
    def one():
        return {"pred_logits": torch.randn(batch, queries, NUM_CLASSES + 1),
                "pred_boxes": torch.rand(batch, queries, 4) * 0.4 + 0.3}
    out = one()
    out["aux_outputs"] = [one() for _ in range(aux)]
    return out


def test_values_match_a_direct_torchvision_computation():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    outputs, targets = _outputs(), _targets()
    losses = criterion(outputs, targets)
    matches = criterion.matcher(outputs, targets)

    target_classes = torch.full((2, 5), NUM_CLASSES)
    l1, giou, count = 0.0, 0.0, 3
    for b, (rows, cols) in enumerate(matches):
        target_classes[b, rows] = targets[b]["labels"][cols]
        pred = outputs["pred_boxes"][b, rows]
        gt = targets[b]["boxes"][cols]
        l1 += (pred - gt).abs().sum()
        giou += (1 - torch.diag(generalized_box_iou(box_convert(pred, "cxcywh", "xyxy"),
                                                    box_convert(gt, "cxcywh", "xyxy")))).sum()
    weight = torch.tensor([1.0, 1.0, 1.0, 0.1])
    ce = F.cross_entropy(outputs["pred_logits"].reshape(-1, 4), target_classes.reshape(-1), weight)
    torch.testing.assert_close(losses["loss_ce"], ce)
    torch.testing.assert_close(losses["loss_bbox"], l1 / count)
    torch.testing.assert_close(losses["loss_giou"], giou / count)
    torch.testing.assert_close(losses["loss"], ce + 5 * l1 / count + 2 * giou / count)


def test_aux_outputs_add_their_own_terms():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    outputs = _outputs(aux=2)
    losses = criterion(outputs, _targets())
    assert {"loss_ce_0", "loss_bbox_1", "loss_giou_1"} <= set(losses)
    final = criterion({k: v for k, v in outputs.items() if k != "aux_outputs"}, _targets())["loss"]
    aux = [criterion(a, _targets())["loss"] for a in outputs["aux_outputs"]]
    torch.testing.assert_close(losses["loss"], final + sum(aux))


def test_invariant_to_permuting_queries():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    outputs, targets = _outputs(queries=7), _targets()
    perm = torch.randperm(7)
    permuted = {k: outputs[k][:, perm] for k in ("pred_logits", "pred_boxes")}
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
    losses = criterion({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert losses["loss_bbox"] < 1e-3 and losses["loss_giou"] < 1e-3 and losses["loss_ce"] < 1e-3
    assert losses["class_error"] == 0 and losses["cardinality_error"] == 0


def test_image_without_objects_trains_toward_no_object():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    logits = torch.zeros(1, 4, NUM_CLASSES + 1, requires_grad=True)
    outputs = {"pred_logits": logits, "pred_boxes": torch.rand(1, 4, 4) * 0.4 + 0.3}
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
    losses = criterion({"pred_logits": torch.randn(2, 5, 4), "pred_boxes": boxes}, _targets())
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert torch.isfinite(boxes.grad).all()


def test_normalisers_count_boxes_and_class_weights():
    criterion = SetCriterion(NUM_CLASSES, LossConfig())
    boxes, weights = criterion.normalisers(_targets(), 5, torch.device("cpu"))
    assert boxes == 3 and weights == pytest.approx(3 + 7 * 0.1)
    boxes, weights = criterion.normalisers([{"labels": torch.zeros(0)}], 5, torch.device("cpu"))
    assert boxes == 1 and weights == pytest.approx(0.5)  # no boxes: 5 no-object queries at 0.1
