import dataclasses
import pytest
import torch
from torch import nn

from torchvision.ops import box_convert, box_iou

from detr.model.query_selection import (CANDIDATES_PER_QUERY, CandidateQuerySelection, QuerySelection, cell_proposals,
                                        distinct_top)


def test_cell_proposals_are_centred_on_cells_of_the_unpadded_part():
    mask = torch.zeros(2, 2, 4, dtype=torch.bool)
    mask[1, :, 2:] = True  # image 1 fills the left half only
    boxes, valid = cell_proposals(mask)
    assert boxes.shape == (2, 8, 4)
    torch.testing.assert_close(boxes[0, 0], torch.tensor([0.125, 0.25, 0.25, 0.5]))
    torch.testing.assert_close(boxes[1, 1], torch.tensor([0.75, 0.25, 0.5, 0.5]))  # second column of two
    assert valid[0].all() and valid[1].tolist() == [True, True, False, False] * 2


class _ZeroHead(nn.Module):
    def forward(self, x):
        return torch.zeros(*x.shape[:-1], 4)


def test_the_top_scoring_valid_tokens_give_the_anchors():
    dim, classes = 4, 2
    selection = QuerySelection(dim, classes, _ZeroHead())
    selection.project = nn.Identity()
    with torch.no_grad():  # class 0's logit is the token's first channel; no-object's is 0
        selection.class_head.weight.zero_()
        selection.class_head.bias.zero_()
        selection.class_head.weight[0, 0] = 1.0
    memory = torch.zeros(1, 8, dim)
    memory[0, [2, 5, 7], 0] = torch.tensor([3.0, 5.0, 9.0])
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask[0, 1, 3] = True  # token 7 is padding: never chosen, however high it scores
    outputs, anchors, content = selection(memory, [mask], count=2)
    proposals, _ = cell_proposals(mask)
    expected = proposals[0, [5, 2]]
    torch.testing.assert_close(anchors[0].sigmoid(), expected, atol=1e-5, rtol=0)
    assert not anchors.requires_grad and not content.requires_grad
    torch.testing.assert_close(content[0], selection.project(memory)[0, [5, 2]])  # the chosen tokens' features
    assert outputs.logits.shape == (1, 8, classes + 1)
    assert outputs.valid[0, 7].item() is False


def test_more_queries_than_tokens_is_a_clear_error():
    selection = QuerySelection(4, 2, _ZeroHead())
    with pytest.raises(ValueError, match="only 8 tokens"):
        selection(torch.zeros(1, 8, 4), [torch.zeros(1, 2, 4, dtype=torch.bool)], count=9)


def test_checkpoints_with_the_old_unused_learned_anchors_still_load():
    from detr.model import build_model
    from tests.conftest import tiny_model_config

    model = build_model(tiny_model_config(queries="selected"))
    state = {**model.state_dict(), "queries.anchor.weight": torch.zeros(6, 4)}
    model.load_state_dict(state)  # strict: every other key must still match
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict({**model.state_dict(), "queries.content.extra": torch.zeros(1)})


def _greedy_nms(scores, boxes, iou):
    """Reference for one image, written as the paper's greedy loop: visit tokens best first, keep
    one unless it overlaps a kept one above `iou`. Returns (kept, suppressed, padding (score < 0)),
    each best first."""
    corners = box_convert(boxes, "cxcywh", "xyxy")
    order = sorted(range(len(scores)), key=lambda i: -scores[i].item())
    kept, suppressed, padding = [], [], []
    for i in order:
        if scores[i] < 0:
            padding.append(i)
        elif all(box_iou(corners[i:i + 1], corners[j:j + 1]).item() <= iou for j in kept):
            kept.append(i)
        else:
            suppressed.append(i)
    return kept, suppressed, padding


def _greedy_distinct(scores, boxes, count, iou):
    """The survivors, then the suppressed ones, then padding: the first `count`."""
    kept, suppressed, padding = _greedy_nms(scores, boxes, iou)
    return (kept + suppressed + padding)[:count]


@pytest.mark.parametrize("iou", [0.3, 0.5, 0.8])
def test_distinct_selection_is_greedy_nms_then_the_suppressed(iou):
    generator = torch.Generator().manual_seed(0)
    batch, length = 3, 40
    # Boxes in a few clusters of near-twins, as neighbouring tokens of one object propose.
    centres = torch.rand(batch, 5, 2, generator=generator) * 0.6 + 0.2
    boxes = torch.cat([centres[:, torch.randint(5, (length,), generator=generator)]
                       + 0.03 * torch.randn(batch, length, 2, generator=generator),
                       0.1 + 0.2 * torch.rand(batch, length, 2, generator=generator)], dim=-1)
    scores = torch.rand(batch, length, generator=generator)
    scores[2, 30:] = -1.0  # the last image's padding tokens
    for count in (4, 12, 36):
        chosen = distinct_top(scores, boxes, count, iou)
        for b in range(batch):
            expected = _greedy_distinct(scores[b], boxes[b], count, iou)
            real = int((scores[b] >= 0).sum())  # padding ties at -1: its order is arbitrary
            assert chosen[b, :real].tolist() == expected[:real]
            assert (scores[b, chosen[b, real:]] < 0).all()


def test_distinct_selection_among_many_tokens_runs_nms_over_the_best_candidates_only():
    """Over the CANDIDATES_PER_QUERY x count best tokens, the choice is the greedy reference's on
    those tokens; where the reference over every token has `count` survivors among them, it is the
    same choice (one image of tight clusters has too few survivors, another of spread boxes enough)."""
    generator = torch.Generator().manual_seed(1)
    length, count = 600, 20
    candidates = CANDIDATES_PER_QUERY * count
    spreads = torch.tensor([0.002, 0.3])[:, None, None]
    centres = torch.rand(2, 6, 2, generator=generator) * 0.6 + 0.2
    boxes = torch.cat([centres[:, torch.randint(6, (length,), generator=generator)]
                       + spreads * torch.randn(2, length, 2, generator=generator),
                       0.1 + 0.1 * torch.rand(2, length, 2, generator=generator)], dim=-1)
    scores = torch.rand(2, length, generator=generator)
    chosen = distinct_top(scores, boxes, count, 0.5)
    same_as_full = []
    for b in range(2):
        best = scores[b].topk(candidates).indices
        on_candidates = _greedy_distinct(scores[b, best], boxes[b, best], count, 0.5)
        assert chosen[b].tolist() == best[on_candidates].tolist()
        full = _greedy_distinct(scores[b], boxes[b], count, 0.5)
        survivors = set(_greedy_nms(scores[b], boxes[b], 0.5)[0]) & set(best.tolist())
        same_as_full.append(chosen[b].tolist() == full)
        assert same_as_full[-1] == (len(survivors) >= count)
    assert same_as_full == [False, True]


def test_distinct_selection_skips_a_near_twin_that_plain_top_k_takes():
    selection = QuerySelection(4, 2, _ZeroHead(), distinct_iou=0.7)
    selection.project = nn.Identity()
    with torch.no_grad():
        selection.class_head.weight.zero_()
        selection.class_head.bias.zero_()
        selection.class_head.weight[0, 0] = 1.0
    memory = torch.zeros(1, 8, 4)
    memory[0, [0, 1, 6], 0] = torch.tensor([9.0, 8.0, 5.0])
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    # One cell-sized box per token, the same box for tokens 0 and 1 (neighbours on one object).
    twin = torch.tensor([0.2, 0.3, 0.3, 0.5])
    selection.predict = _with_boxes(selection.predict, {0: twin, 1: twin})
    _, anchors, _ = selection(memory, [mask], count=2)
    proposals, _ = cell_proposals(mask)
    torch.testing.assert_close(anchors[0].sigmoid(), torch.stack([twin, proposals[0, 6]]), atol=1e-5, rtol=0)
    selection.distinct_iou = 0.0  # plain top-k takes both twins
    _, anchors, _ = selection(memory, [mask], count=2)
    torch.testing.assert_close(anchors[0].sigmoid(), torch.stack([twin, twin]), atol=1e-5, rtol=0)


def _with_boxes(predict, boxes_by_token):
    """Wraps TokenHeads.predict so that the given tokens propose the given boxes."""
    def wrapped(memory, feature_masks):
        proposals, box_logits, tokens = predict(memory, feature_masks)
        box_logits = box_logits.clone()
        for token, box in boxes_by_token.items():
            box_logits[:, token] = torch.logit(box)
        return dataclasses.replace(proposals, boxes=box_logits.sigmoid()), box_logits, tokens
    return wrapped


def test_distinct_queries_needs_query_selection_and_an_iou_below_one():
    from detr.model import build_model
    from tests.conftest import tiny_model_config

    with pytest.raises(ValueError, match="model.distinct_queries acts on selected queries"):
        build_model(tiny_model_config(queries="anchors", distinct_queries=0.8))
    with pytest.raises(ValueError, match=r"IoU threshold in \[0, 1\)"):
        build_model(tiny_model_config(queries="selected", distinct_queries=1.0))


@pytest.mark.parametrize("distinct_iou", [0.0, 0.5])
def test_inference_chooses_as_training_with_the_box_head_on_the_candidates_alone(distinct_iou):
    """In eval mode the box head runs on the candidate tokens only: the same anchors and content as
    training's pass over every token, padding included, with no proposals returned."""
    torch.manual_seed(0)
    count = 6
    selection = QuerySelection(8, 3, nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)),
                               distinct_iou=distinct_iou)
    with torch.no_grad():  # wide boxes, so that neighbouring tokens' boxes overlap and NMS drops some
        selection.box_head[-1].bias.copy_(torch.tensor([0.0, 0.0, 2.5, 2.5]))
    rows = []
    selection.box_head.register_forward_hook(lambda module, inputs, output: rows.append(inputs[0].shape[1]))
    masks = [torch.zeros(2, 6, 8, dtype=torch.bool), torch.zeros(2, 3, 4, dtype=torch.bool)]
    masks[0][1, :, 2:] = True  # image 1 is padded on both levels: 15 tokens, fewer than the 24 candidates
    masks[1][1, :, 1:] = True
    memory = torch.randn(2, 6 * 8 + 3 * 4, 8)
    proposals, anchors, content = selection.train()(memory, masks, count)
    assert rows.pop() == memory.shape[1]
    none, eval_anchors, eval_content = selection.eval()(memory, masks, count)
    assert none is None and proposals is not None
    assert rows.pop() == (CANDIDATES_PER_QUERY * count if distinct_iou else count)
    torch.testing.assert_close(eval_anchors, anchors, atol=1e-6, rtol=0)
    torch.testing.assert_close(eval_content, content, atol=1e-6, rtol=0)
    if distinct_iou:  # NMS changed the choice: the test sees its order
        selection.distinct_iou = 0.0
        assert not torch.allclose(selection(memory, masks, count)[1], eval_anchors)


def _token_scores(selection, memory, masks):
    """Every token's score as QuerySelection scores it: its best class's probability, -1 on padding."""
    with torch.no_grad():
        logits = selection.class_head(selection.project(memory))
    valid = torch.cat([~mask.flatten(1) for mask in masks], dim=1)
    return logits.softmax(-1)[..., :-1].amax(-1).masked_fill(~valid, -1.0)


@pytest.mark.parametrize("distinct_iou", [0.0, 0.5])
def test_candidate_proposals_are_the_best_scored_tokens_rows_with_the_same_queries(distinct_iou):
    """model.proposal_tokens='candidates': the same anchors and content as the proposals over every
    token, the proposals being those proposals' rows at the CANDIDATES_PER_QUERY x count best-scored
    tokens (padding last, its boxes far off), with the box head run on those rows alone."""
    torch.manual_seed(1)
    count = 5
    every = QuerySelection(8, 3, nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)), distinct_iou)
    with torch.no_grad():  # wide boxes, so that NMS has neighbours to drop
        every.box_head[-1].bias.copy_(torch.tensor([0.0, 0.0, 2.5, 2.5]))
    candidates = CandidateQuerySelection(8, 3, every.box_head, distinct_iou)
    candidates.load_state_dict(every.state_dict())
    rows = []
    candidates.box_head.register_forward_hook(lambda module, inputs, output: rows.append(inputs[0].shape[1]))
    masks = [torch.zeros(2, 6, 8, dtype=torch.bool), torch.zeros(2, 3, 4, dtype=torch.bool)]
    masks[0][1, :, 2:] = True  # image 1: 15 valid tokens, fewer than the 20 candidates
    masks[1][1, :, 1:] = True
    memory = torch.randn(2, 6 * 8 + 3 * 4, 8)

    reference, anchors, content = every.train()(memory, masks, count)
    rows.clear()
    proposals, candidate_anchors, candidate_content = candidates.train()(memory, masks, count)
    size = CANDIDATES_PER_QUERY * count
    assert rows == [size]
    torch.testing.assert_close(candidate_anchors, anchors, atol=1e-6, rtol=0)
    torch.testing.assert_close(candidate_content, content, atol=1e-6, rtol=0)

    scores = _token_scores(every, memory, masks)
    for image in range(2):
        # Each candidate row is the reference row of the token with the same logits (random memory:
        # no two tokens share them).
        found = [int((reference.logits[image] == row).all(-1).nonzero()) for row in proposals.logits[image]]
        assert sorted(found) == sorted(scores[image].topk(size).indices.tolist())
        torch.testing.assert_close(proposals.boxes[image], reference.boxes[image, found], atol=1e-6, rtol=0)
        assert proposals.valid[image].tolist() == reference.valid[image, found].tolist()
        torch.testing.assert_close(proposals.cells[image], reference.cells[image, found])
    assert (~proposals.valid[1]).sum() == size - 15 and (proposals.boxes[1][~proposals.valid[1], :2] < 0).all()

    none, eval_anchors, _ = candidates.eval()(memory, masks, count)  # inference: as QuerySelection's
    assert none is None
    torch.testing.assert_close(eval_anchors, anchors, atol=1e-6, rtol=0)


def test_proposal_tokens_is_built_as_its_part_and_refused_where_it_does_nothing():
    from detr.model import build_model
    from tests.conftest import tiny_model_config

    model = build_model(tiny_model_config(queries="selected", proposal_tokens="candidates"))
    assert type(model.query_selection) is CandidateQuerySelection
    assert type(build_model(tiny_model_config(queries="selected")).query_selection) is QuerySelection
    with pytest.raises(ValueError, match="model.proposal_tokens acts on selected queries"):
        build_model(tiny_model_config(queries="anchors", proposal_tokens="candidates"))
    with pytest.raises(ValueError, match="model.proposal_tokens is 'all' or 'candidates'"):
        build_model(tiny_model_config(queries="selected", proposal_tokens="some"))


@pytest.mark.parametrize("dense", [False, True])
def test_a_model_with_candidate_proposals_trains_them_one_to_one_or_densely(dense):
    """A training step of a model whose proposals are the candidates: the proposals' loss is finite
    and reaches the query selection's box head, with one-to-one or dense proposals."""
    from detr.config.schema import LossConfig
    from detr.loss.criterion import SetCriterion
    from detr.model import build_model
    from tests.conftest import tiny_model_config

    torch.manual_seed(0)
    model = build_model(tiny_model_config(queries="selected", proposal_tokens="candidates", distinct_queries=0.5))
    criterion = SetCriterion(3, LossConfig(dense_proposals=dense))
    targets = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.3], [0.7, 0.6, 0.4, 0.3]])},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])}]
    outputs = model.train()(torch.randn(2, 3, 96, 96))
    assert outputs.proposals.logits.shape[1] == CANDIDATES_PER_QUERY * 6
    losses = criterion(outputs, targets)
    assert all(torch.isfinite(losses[name + "_enc"]) for name in ("loss_ce", "loss_bbox", "loss_giou"))
    losses["loss"].backward()
    assert model.query_selection.box_head.layers[-1].weight.grad.abs().sum() > 0
