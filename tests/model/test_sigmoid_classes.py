"""model.sigmoid_classes: each class its own sigmoid (Deformable DETR, DINO, RT-DETR)."""

import torch
from torch import nn

from detr.model import build_model
from detr.model.query_selection import QuerySelection
from tests.conftest import tiny_model_config


def test_every_class_head_starts_at_the_focal_prior():
    config = tiny_model_config(anchor_queries=True, query_selection=True, sigmoid_classes=True)
    model = build_model(config).train()
    out = model(torch.randn(1, 3, 64, 64))
    for logits in (out["pred_logits"], out["enc_outputs"]["pred_logits"]):
        probabilities = logits[..., :-1].sigmoid()
        # The bias alone says 0.01; the weights' share at init moves it little.
        assert 0.003 < probabilities.median() < 0.03


class _ZeroHead(nn.Module):
    def forward(self, x):
        return torch.zeros(*x.shape[:-1], 4)


def test_query_selection_ranks_tokens_by_the_class_sigmoid():
    """Token 1 (class 3.0, no-object 3.0) is sure of its class by sigmoid (0.95) and not by
    softmax (0.49); token 2 (class 2.0, no-object -5.0) scores 0.88 both ways. Each reading
    picks its own best."""
    def chosen(sigmoid):
        selection = QuerySelection(4, 1, _ZeroHead(), sigmoid=sigmoid)
        selection.project = nn.Identity()
        with torch.no_grad():  # class 0's logit is channel 0, no-object's channel 1
            selection.class_head.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
            selection.class_head.bias.zero_()
        memory = torch.full((1, 4, 4), 0.0)
        memory[0, :, 0] = torch.tensor([-9.0, 3.0, 2.0, -9.0])
        memory[0, :, 1] = torch.tensor([0.0, 3.0, -5.0, 0.0])
        _, anchors, content = selection(memory, [torch.zeros(1, 2, 2, dtype=torch.bool)], count=1)
        return int(content[0, 0, 0])

    assert chosen(sigmoid=True) == 3
    assert chosen(sigmoid=False) == 2
