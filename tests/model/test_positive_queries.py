import pytest
import torch

from detr.config import LossConfig
from detr.loss import SetCriterion
from detr.model import build_model
from detr.model.positive_queries import positive_queries
from detr.model.query_selection import cell_proposals
from tests.conftest import tiny_model_config


def test_each_object_gets_the_tokens_nearest_its_centre_never_padding():
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[1, :, 2:] = True  # image 1: only the left half is image
    cells, valid = cell_proposals(mask)
    box_logits = torch.randn(2, 16, 4)
    targets = [{"labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.1, 0.1, 0.2, 0.2], [0.9, 0.6, 0.2, 0.2]])},
               {"labels": torch.tensor([2]), "boxes": torch.tensor([[0.9, 0.9, 0.2, 0.2]])}]
    queries = positive_queries(box_logits, cells, valid, targets, per_object=2)
    assert queries.anchors.shape == (2, 4, 4)
    # Image 0: object 0 at the top-left corner takes token 0 and one of its neighbours (1 or 4,
    # equally near); object 1 (x 0.9, y 0.6) takes tokens 11 (its cell) and 7 or 15.
    chosen = [int((box_logits[0] == a).all(-1).nonzero()) for a in queries.anchors[0]]
    assert chosen[0] == 0 and chosen[1] in (1, 4) and chosen[2] == 11 and chosen[3] in (7, 15)
    assert queries.owners[0].tolist() == [0, 0, 1, 1] and not queries.padding[0].any()
    # Image 1: its one object (global index 2) lies in the padded part's direction: the nearest
    # valid tokens are in the last image row, right column of the valid half (cells 13 then 9).
    chosen = [int((box_logits[1] == a).all(-1).nonzero()) for a in queries.anchors[1, :2]]
    assert chosen == [13, 9] and queries.owners[1, :2].tolist() == [2, 2]
    assert queries.padding[1].tolist() == [False, False, True, True]
    assert not queries.anchors.requires_grad
    assert positive_queries(box_logits, cells, valid, [{"labels": torch.zeros(0, dtype=torch.int64),
                                                        "boxes": torch.zeros(0, 4)}] * 2, 2) is None


def test_positive_losses_pair_each_query_with_its_object():
    targets = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.4]])},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.4, 0.5, 0.3]])}]
    owners = torch.tensor([[0, 0, 1, 1], [2, 2, 0, 0]])
    padding = torch.tensor([[False] * 4, [False, False, True, True]])
    all_boxes = torch.cat([t["boxes"] for t in targets])
    logits = torch.randn(2, 4, 4)
    positive = {"pred_logits": logits, "pred_boxes": all_boxes[owners], "padding": padding, "owners": owners}
    outputs = {"pred_logits": torch.randn(2, 5, 4), "pred_boxes": torch.rand(2, 5, 4) * 0.4 + 0.3,
               "positive_outputs": positive}
    losses = SetCriterion(3, LossConfig())(outputs, targets)
    assert losses["loss_bbox_pos"] < 1e-5 and losses["loss_giou_pos"] < 1e-5
    logp = logits.log_softmax(-1)
    expected = -(logp[0, 0, 0] + logp[0, 1, 0] + logp[0, 2, 2] + logp[0, 3, 2] + logp[1, 0, 1] + logp[1, 1, 1]) / 6
    torch.testing.assert_close(losses["loss_ce_pos"], expected)


def test_positive_queries_train_the_decoder_and_inference_never_sees_them():
    torch.manual_seed(0)
    config = dict(anchor_queries=True, query_selection=True)
    with_them = build_model(tiny_model_config(positive_queries=3, **config))
    without = build_model(tiny_model_config(**config))
    without.load_state_dict({k: v for k, v in with_them.state_dict().items() if not k.startswith("positive_")})
    images = torch.randn(2, 3, 64, 96)
    targets = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.4]])},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.4, 0.5, 0.3]])}]
    with_them.eval(), without.eval()
    with torch.no_grad():
        torch.testing.assert_close(with_them(images)["pred_boxes"], without(images)["pred_boxes"], atol=0, rtol=0)
    with_them.train()
    out = with_them(images, targets=targets)
    assert out["positive_outputs"]["pred_logits"].shape == (2, 6, 4)
    losses = SetCriterion(3, LossConfig(), queries_per_group=6)(out, targets)
    losses["loss_giou_pos"].backward()
    assert with_them.bbox_embed.layers[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="query_selection"):
        build_model(tiny_model_config(positive_queries=3, anchor_queries=True))
