import pytest
import torch

from detr.config import BackboneConfig
from detr.model import build_model
from detr.model.fine_level import FineLevel
from detr.model.position_encoding import SinePositionEncoding
from tests.conftest import tiny_model_config


def _fine_config(**overrides):
    return tiny_model_config(queries="selected", fine_level=True, **overrides)


def test_each_fine_cell_starts_from_its_coarse_parent_token():
    # With the stage's projection and the mixing convs silenced, a fine cell is exactly the
    # encoder token of the coarse cell that covers it: the coarse map is read back row-major.
    dim = 8
    layer = FineLevel(channels=4, dim=dim)
    with torch.no_grad():
        for module in list(layer.project) + list(layer.mix):
            for parameter in module.parameters():
                parameter.zero_()
    coarse_shape = (2, 3)
    memory = torch.randn(1, 6, dim)  # tokens of a 2x3 map, row after row
    tokens, pos, mask = layer(torch.randn(1, 4, 4, 6), memory, coarse_shape, None, SinePositionEncoding(dim))
    assert tokens.shape == (1, 24, dim) and pos.shape == (1, 24, dim) and mask.shape == (1, 4, 6)
    fine = tokens[0].view(4, 6, dim)
    for y in range(4):
        for x in range(6):
            torch.testing.assert_close(fine[y, x], memory[0, (y // 2) * 3 + x // 2])
    assert not mask.any()


def test_the_decoder_and_query_selection_read_both_levels():
    model = build_model(_fine_config()).train()
    images = torch.randn(2, 3, 64, 96)
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 48:] = True
    out = model(images, mask)
    proposals = out.proposals
    # 8x12 stride-8 cells, then 4x6 stride-16 ones.
    assert proposals.logits.shape == (2, 96 + 24, 4)
    widths = proposals.cells[0, :, 2]
    torch.testing.assert_close(widths[:96], torch.full((96,), 1 / 12))
    torch.testing.assert_close(widths[96:], torch.full((24,), 1 / 6))
    valid = proposals.valid
    assert valid[0].all() and int(valid[1, :96].sum()) == 8 * 6 and int(valid[1, 96:].sum()) == 4 * 3
    # The finer level learns: the loss reaches its projection and the earlier stage's convolutions.
    (out.boxes.sum() + proposals.logits.sum()).backward()
    assert model.fine_level.project[0].weight.grad.abs().sum() > 0
    assert model.backbone.body.layer2[0].conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(images, mask).boxes.shape == (2, 6, 4)


def test_off_is_the_paper_model_and_misuse_is_refused():
    assert not any(name.startswith("fine_level") for name in build_model(tiny_model_config()).state_dict())
    with pytest.raises(ValueError, match="stage before the last"):
        build_model(_fine_config(backbone=BackboneConfig(name="resnet18", last_layer="layer2")))
