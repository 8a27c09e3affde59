"""The matcher's cost matrix entry by entry, and the inputs the brute-force test never draws:
configured weights, a single non-zero cost, padding tokens, half-precision outputs, NaNs."""

import pytest
import torch
from torch.utils._pytree import tree_map

from detr.config import LossConfig
from detr.loss import HungarianMatcher
from detr.model.outputs import Predictions, TokenProposals
from tests.loss.test_matcher import _pair_cost, _random_boxes


def _problem(seed: int, batch: int = 2, queries: int = 5, classes: int = 4, counts=(3, 2)):
    generator = torch.Generator().manual_seed(seed)
    outputs = Predictions(torch.randn(batch, queries, classes + 1, generator=generator),
                          _random_boxes(batch * queries, generator).view(batch, queries, 4))
    targets = [{"labels": torch.randint(0, classes, (n,), generator=generator), "boxes": _random_boxes(n, generator)}
               for n in counts]
    return outputs, targets


def _reference_costs(outputs, targets, weights):
    return [_pair_cost(outputs.logits[b], outputs.boxes[b], t["labels"], t["boxes"], weights)
            for b, t in enumerate(targets)]


@pytest.mark.parametrize("weights", [(1.0, 5.0, 2.0), (0.7, 0.0, 0.0), (0.0, 1.3, 0.0), (0.0, 0.0, 2.2)])
def test_cost_matrix_is_the_weighted_sum_written_pair_by_pair(weights):
    """Every entry, not only the optimum's total: a single non-zero weight isolates each term,
    so a term with the wrong sign or scale cannot hide behind the other two."""
    outputs, targets = _problem(1)
    costs = HungarianMatcher(*weights).cost_matrices(outputs, targets)
    for cost, expected in zip(costs, _reference_costs(outputs, targets, weights), strict=True):
        assert cost.shape == expected.shape and cost.dtype == torch.float32
        torch.testing.assert_close(cost, expected, atol=1e-5, rtol=1e-5)


def test_the_default_matcher_is_the_papers_softmax_cost_with_weights_1_5_2():
    outputs, targets = _problem(10)
    costs = HungarianMatcher().cost_matrices(outputs, targets)
    for cost, expected in zip(costs, _reference_costs(outputs, targets, (1.0, 5.0, 2.0)), strict=True):
        torch.testing.assert_close(cost, expected, atol=1e-5, rtol=1e-5)


def test_from_config_uses_the_configured_cost_weights():
    config = LossConfig(cost_class=0.5, cost_bbox=3.0, cost_giou=1.5)
    outputs, targets = _problem(2)
    costs = HungarianMatcher.from_config(config).cost_matrices(outputs, targets)
    for cost, expected in zip(costs, _reference_costs(outputs, targets, (0.5, 3.0, 1.5)), strict=True):
        torch.testing.assert_close(cost, expected, atol=1e-5, rtol=1e-5)


def test_all_costs_zero_is_refused_but_any_one_non_zero_is_accepted():
    with pytest.raises(ValueError, match="^all matcher costs are zero$"):
        HungarianMatcher(0.0, 0.0, 0.0)
    for weights in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)):
        HungarianMatcher(*weights)


def test_targets_for_a_different_batch_size_are_a_clear_error():
    outputs, targets = _problem(3)
    with pytest.raises(ValueError, match="3 targets for a batch of 2 images"):
        HungarianMatcher()(outputs, targets + targets[:1])


def test_as_many_targets_as_queries_is_allowed():
    outputs, targets = _problem(4, queries=3, counts=(3, 0))
    rows, cols = HungarianMatcher()(outputs, targets)[0]
    assert sorted(rows.tolist()) == [0, 1, 2] and sorted(cols.tolist()) == [0, 1, 2]


def test_cost_matrices_have_one_row_per_query_even_without_targets():
    """With no target in the batch, each image still gets a [queries, 0] matrix."""
    outputs, targets = _problem(5, queries=4, counts=(0, 0))
    costs = HungarianMatcher().cost_matrices(outputs, targets)
    assert [tuple(c.shape) for c in costs] == [(4, 0), (4, 0)]
    outputs, targets = _problem(5, queries=4, counts=(1, 0))  # a single target in the batch
    costs = HungarianMatcher().cost_matrices(outputs, targets)
    assert [tuple(c.shape) for c in costs] == [(4, 1), (4, 0)]
    torch.testing.assert_close(costs[0], _reference_costs(outputs, targets, (1.0, 5.0, 2.0))[0], atol=1e-5, rtol=0)


def test_padding_tokens_are_never_matched_even_when_they_fit_best():
    """Token proposals carry `valid`: a padding token sitting exactly on a target must lose
    to a real token, and the real tokens' costs are untouched."""
    outputs, targets = _problem(6, batch=2, queries=4, counts=(2, 1))
    fits = ((0, 0, 0), (0, 1, 1), (1, 3, 0))  # (image, token, target): padding tokens that fit perfectly
    for image, token, target in fits:
        outputs.boxes[image, token] = targets[image]["boxes"][target]
        outputs.logits[image, token] = 0.0
        outputs.logits[image, token, targets[image]["labels"][target]] = 10.0
    valid = torch.tensor([[False, False, True, True], [True, True, True, False]])
    outputs = TokenProposals(outputs.logits, outputs.boxes, valid, torch.zeros_like(outputs.boxes))
    matcher = HungarianMatcher()
    for image, (rows, _) in enumerate(matcher(outputs, targets)):
        assert outputs.valid[image, rows].all()
    references = _reference_costs(outputs, targets, (1.0, 5.0, 2.0))
    for image, (cost, reference) in enumerate(zip(matcher.cost_matrices(outputs, targets), references, strict=True)):
        valid = outputs.valid[image]
        torch.testing.assert_close(cost[valid], reference[valid], atol=1e-5, rtol=1e-5)
        assert (cost[~valid] > 1e6).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_outputs_are_costed_in_fp32(dtype):
    """Under autocast the heads emit bf16/fp16; the matcher upcasts before any arithmetic, so
    the costs are those of the same (rounded) values in fp32, to fp32 accuracy."""
    outputs, targets = _problem(7)
    half = tree_map(lambda value: value.to(dtype), outputs)
    half_targets = [{"labels": t["labels"], "boxes": t["boxes"].to(dtype)} for t in targets]
    upcast = tree_map(lambda value: value.float(), half)
    upcast_targets = [{"labels": t["labels"], "boxes": t["boxes"].float()} for t in half_targets]
    costs = HungarianMatcher().cost_matrices(half, half_targets)
    for cost, expected in zip(costs, _reference_costs(upcast, upcast_targets, (1.0, 5.0, 2.0)), strict=True):
        assert cost.dtype == torch.float32
        torch.testing.assert_close(cost, expected, atol=2e-6, rtol=2e-6)


def test_a_nan_prediction_is_matched_last_not_first():
    """A query whose box is NaN costs more than any real one (the loss will show its NaN);
    the solver neither raises nor prefers it."""
    outputs, targets = _problem(8, batch=1, queries=3, counts=(2,))
    outputs.boxes[0, 0] = float("nan")
    outputs.logits[0, 0] = float("nan")
    rows, _ = HungarianMatcher()(outputs, targets)[0]
    assert sorted(rows.tolist()) == [1, 2]
    cost = HungarianMatcher().cost_matrices(outputs, targets)[0]
    assert torch.isfinite(cost).all() and (cost[0] >= 1e8).all()


def test_matches_are_int64_index_tensors():
    outputs, targets = _problem(9)
    for rows, cols in HungarianMatcher()(outputs, targets):
        assert rows.dtype == cols.dtype == torch.int64


def test_too_many_targets_names_the_setting_to_raise():
    outputs, targets = _problem(11, batch=1, queries=2, counts=(3,))
    with pytest.raises(ValueError, match=r"has 3 target boxes but the model has only 2 queries; raise model\.num_queries$"):
        HungarianMatcher()(outputs, targets)


def test_an_empty_batch_has_no_matches():
    """The last shard of an uneven split can be empty; matching it is not an error."""
    outputs = Predictions(torch.zeros(0, 5, 4), torch.zeros(0, 5, 4))
    assert HungarianMatcher()(outputs, []) == []
