import pytest
import torch

from detr.config import LossConfig
from detr.loss import SetCriterion
from detr.model import build_model
from detr.model.outputs import DETROutput, Predictions
from detr.weights.formats import load_weights, write_weights
from tests.conftest import tiny_model_config
from tests.weights.helpers import tiny_weights


def _pair(groups=3):
    """A model with query groups and the same model with one group (its first group's queries)."""
    grouped = build_model(tiny_model_config(query_groups=groups))
    single = build_model(tiny_model_config())
    state = grouped.state_dict()
    state["queries.embed.weight"] = state["queries.embed.weight"][:6]
    single.load_state_dict(state)
    return grouped, single


def test_groups_train_side_by_side_and_only_the_first_runs_at_inference():
    grouped, single = _pair()
    images, mask = torch.randn(2, 3, 64, 96), torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 64:] = True
    grouped.eval(), single.eval()
    with torch.no_grad():
        a, b = grouped(images, mask), single(images, mask)
    assert a.logits.shape == (2, 6, 4)
    torch.testing.assert_close(a.boxes, b.boxes, atol=1e-6, rtol=0)
    # Training mode (frozen BatchNorm, no dropout): three groups, each decoding on its own,
    # so the first equals the single-group model and the others differ from it.
    grouped.train(), single.train()
    with torch.no_grad():
        a, b = grouped(images, mask), single(images, mask)
    assert a.logits.shape == (2, 18, 4)  # the criterion knows the group size
    assert len(a.aux) == 1 and a.aux[0].boxes.shape == (2, 18, 4)
    torch.testing.assert_close(a.logits[:, :6], b.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.aux[0].boxes[:, :6], b.aux[0].boxes,
                               atol=1e-6, rtol=0)
    assert (a.logits[:, 6:12] - b.logits).abs().max() > 1e-3


def test_the_loss_averages_groups_each_matched_on_its_own():
    criterion = SetCriterion(3, LossConfig(), queries_per_group=5)
    targets = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.4]])},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.4, 0.5, 0.3]])}]

    def layer():
        return Predictions(torch.randn(2, 10, 4), torch.rand(2, 10, 4) * 0.4 + 0.3)

    final = layer()
    outputs = DETROutput(final.logits, final.boxes, [layer()])  # 10 queries: 2 groups of 5
    together = criterion(outputs, targets)
    per_group = []
    for g in range(2):
        part = slice(5 * g, 5 * g + 5)

        def chunk(o):
            return Predictions(o.logits[:, part], o.boxes[:, part])

        per_group.append(criterion(DETROutput(*vars(chunk(outputs)).values(), [chunk(outputs.aux[0])]), targets))
    for key in ("loss", "loss_ce", "loss_bbox", "loss_giou_0"):
        assert float(together[key]) == pytest.approx((float(per_group[0][key]) + float(per_group[1][key])) / 2,
                                                     rel=1e-6), key
    assert float(together["class_error"]) == pytest.approx(float(per_group[0]["class_error"]))
    assert float(per_group[0]["loss"]) != pytest.approx(float(per_group[1]["loss"]))


def test_other_layouts_get_the_first_group_only(tmp_path):
    weights = tiny_weights(query_groups=4)
    assert weights.state["queries.embed.weight"].shape[0] == 24
    back = load_weights(write_weights(weights, tmp_path / "hf", "hf"))
    assert back.config.model.query_groups == 1 and back.config.model.num_queries == 6
    torch.testing.assert_close(back.state["queries.embed.weight"], weights.state["queries.embed.weight"][:6])
    ours = load_weights(write_weights(weights, tmp_path / "ours", "ours"))
    assert ours.config.model.query_groups == 4 and ours.state["queries.embed.weight"].shape[0] == 24


def test_groups_share_their_image_memory_in_cross_attention():
    # Query groups ride as batch entries (b x G + g) against one memory an image; that must
    # equal each entry attending its own copy of the memory.
    from detr.model.transformer import DecoderLayer

    torch.manual_seed(0)
    layer = DecoderLayer(16, 4, 32, 0.0, False).eval()
    groups, memory, pos = 3, torch.randn(2, 10, 16), torch.randn(2, 10, 16)
    padding = torch.zeros(2, 10, dtype=torch.bool)
    padding[1, 7:] = True
    tgt, query_pos = torch.randn(2 * groups, 5, 16), torch.randn(2 * groups, 5, 16)
    shared = layer(tgt, memory, pos, query_pos, padding)[0]
    copied = layer(tgt, memory.repeat_interleave(groups, 0), pos.repeat_interleave(groups, 0), query_pos,
                   padding.repeat_interleave(groups, 0))[0]
    torch.testing.assert_close(shared, copied, atol=1e-5, rtol=0)
