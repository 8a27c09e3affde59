import itertools

import pytest
import torch
from torchvision.ops import box_convert, generalized_box_iou

from detr.loss import HungarianMatcher
from detr.model.outputs import Predictions


def _random_boxes(n: int, generator) -> torch.Tensor:
    centre = torch.rand(n, 2, generator=generator) * 0.6 + 0.2
    size = torch.rand(n, 2, generator=generator) * 0.3 + 0.05
    return torch.cat([centre, size], dim=1)


def _pair_cost(logits, pred, labels, target, weights):
    """The matching cost of every pair, written independently of the matcher."""
    w_class, w_bbox, w_giou = weights
    cost = torch.empty(len(pred), len(target))
    giou = generalized_box_iou(box_convert(pred, "cxcywh", "xyxy"), box_convert(target, "cxcywh", "xyxy"))
    for q in range(len(pred)):
        for t in range(len(target)):
            cost[q, t] = (
                w_class * -logits[q].softmax(-1)[labels[t]]
                + w_bbox * (pred[q] - target[t]).abs().sum()
                - w_giou * giou[q, t]
            )
    return cost


def _brute_force(cost: torch.Tensor) -> float:
    queries, targets = cost.shape
    if targets == 0:
        return 0.0
    rows = cost.tolist()  # plain floats: the permutations are many, tensor indexing is slow
    return min(
        sum(rows[q][t] for t, q in enumerate(chosen))
        for chosen in itertools.permutations(range(queries), targets)
    )


def test_matches_brute_force_on_random_problems():
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for case in range(240):
        batch = 1 + case % 3
        queries = 1 + case % 6
        weights = (1.0, 5.0, 2.0) if case % 2 else tuple(torch.rand(3, generator=generator).tolist())
        matcher = HungarianMatcher(*weights)
        logits = torch.randn(batch, queries, 5, generator=generator)
        pred = _random_boxes(batch * queries, generator).view(batch, queries, 4)
        targets = []
        for _ in range(batch):
            count = int(torch.randint(0, queries + 1, (1,), generator=generator))
            targets.append({"labels": torch.randint(0, 4, (count,), generator=generator),
                            "boxes": _random_boxes(count, generator)})
        matches = matcher(Predictions(logits, pred), targets)
        for b, (rows, cols) in enumerate(matches):
            count = len(targets[b]["labels"])
            assert len(rows) == len(cols) == count
            assert len(set(rows.tolist())) == count and sorted(cols.tolist()) == list(range(count))
            cost = _pair_cost(logits[b], pred[b], targets[b]["labels"], targets[b]["boxes"], weights)
            chosen = sum(cost[q, t].item() for q, t in zip(rows.tolist(), cols.tolist()))
            assert chosen == pytest.approx(_brute_force(cost), abs=1e-4)
            checked += 1
    assert checked >= 400


def test_zero_targets_give_empty_matches():
    matcher = HungarianMatcher()
    outputs = Predictions(torch.randn(2, 4, 3), torch.rand(2, 4, 4) * 0.5 + 0.25)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}
    for rows, cols in matcher(outputs, [empty, empty]):
        assert rows.numel() == 0 and cols.numel() == 0


def test_more_targets_than_queries_is_a_clear_error():
    matcher = HungarianMatcher()
    outputs = Predictions(torch.randn(1, 2, 3), torch.rand(1, 2, 4))
    targets = [{"labels": torch.zeros(3, dtype=torch.int64), "boxes": torch.rand(3, 4) * 0.2 + 0.3}]
    with pytest.raises(ValueError, match="3 target boxes but the model has only 2 queries"):
        matcher(outputs, targets)


def test_all_layers_in_one_pass_equal_each_layer_alone():
    generator = torch.Generator().manual_seed(5)
    targets = [{"labels": torch.tensor([0, 2, 1]), "boxes": torch.rand(3, 4, generator=generator) * 0.4 + 0.3},
               {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
               {"labels": torch.tensor([2]), "boxes": torch.rand(1, 4, generator=generator) * 0.4 + 0.3}]
    layers = [Predictions(torch.randn(3, 6, 4, generator=generator),
                          torch.rand(3, 6, 4, generator=generator) * 0.5 + 0.25) for _ in range(4)]
    matcher = HungarianMatcher(1.0, 5.0, 2.0)
    together = matcher.match_layers(layers, targets)
    costs = matcher.layer_cost_matrices(layers, targets)
    for layer, matches, layer_costs in zip(layers, together, costs):
        for (rows, cols), (alone_rows, alone_cols), cost, alone_cost in zip(
                matches, matcher(layer, targets), layer_costs, matcher.cost_matrices(layer, targets)):
            assert torch.equal(rows, alone_rows) and torch.equal(cols, alone_cols)
            assert torch.allclose(cost, alone_cost, atol=1e-6)
    assert len({tuple(m[0][0].tolist()) for m in together}) > 1  # the layers really differ
