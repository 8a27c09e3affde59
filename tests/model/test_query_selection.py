import pytest
import torch
from torch import nn

from detr.model.query_selection import QuerySelection, cell_proposals


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
    assert outputs["pred_logits"].shape == (1, 8, classes + 1)
    assert outputs["valid"][0, 7].item() is False


def test_more_queries_than_tokens_is_a_clear_error():
    selection = QuerySelection(4, 2, _ZeroHead())
    with pytest.raises(ValueError, match="only 8 tokens"):
        selection(torch.zeros(1, 8, 4), [torch.zeros(1, 2, 4, dtype=torch.bool)], count=9)


def test_checkpoints_with_the_old_unused_learned_anchors_still_load():
    from detr.model import build_model
    from tests.conftest import tiny_model_config

    model = build_model(tiny_model_config(anchor_queries=True, query_selection=True))
    state = {**model.state_dict(), "query_anchor.weight": torch.zeros(6, 4)}
    model.load_state_dict(state)  # strict: every other key must still match
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict({**model.state_dict(), "query_content.extra": torch.zeros(1)})
