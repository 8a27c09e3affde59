import torch

from detr.config import LossConfig
from detr.loss import SetCriterion
from detr.model import build_model
from tests.conftest import tiny_model_config


def _targets():
    return [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.4]])},
            {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.4, 0.5, 0.3]])}]


def test_the_dense_head_trains_the_backbone_and_inference_never_sees_it():
    torch.manual_seed(0)
    with_head = build_model(tiny_model_config(dense_head=True))
    without = build_model(tiny_model_config())
    state = {k: v for k, v in with_head.state_dict().items() if not k.startswith("dense_head.")}
    without.load_state_dict(state)
    images, mask = torch.randn(2, 3, 64, 96), torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 64:] = True
    with_head.eval(), without.eval()
    with torch.no_grad():
        a, b = with_head(images, mask), without(images, mask)
    assert "dense_outputs" not in a
    torch.testing.assert_close(a["pred_boxes"], b["pred_boxes"], atol=0, rtol=0)

    with_head.train()
    out = with_head(images, mask)
    dense = out["dense_outputs"]
    assert dense["pred_logits"].shape == (2, 4 * 6, 4) and dense["valid"][1].sum() == 4 * 4  # stride 16
    losses = SetCriterion(3, LossConfig(), queries_per_group=6)(out, _targets())
    losses["loss_ce_dense"].backward()
    assert with_head.backbone.body.layer3[0].conv1.weight.grad.abs().sum() > 0
    assert with_head.query_embed.weight.grad is None  # the decoder's queries play no part in it
