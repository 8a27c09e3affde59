from functools import partial

import pytest
import torch

from detr.config import BackboneConfig
from detr.model import build_model
from detr.model.fine_level import FineLevel, conv_mix, separable_mix
from detr.model.position_encoding import SinePositionEncoding
from tests.conftest import tiny_model_config


def _fine_config(**overrides):
    return tiny_model_config(queries="selected", fine_level=True, **overrides)


def test_each_fine_cell_starts_from_its_coarse_parent_token():
    # With the stage's projection and the mixing convs silenced, a fine cell is exactly the
    # encoder token of the coarse cell that covers it: the coarse map is read back row-major.
    dim = 8
    layer = FineLevel(channels=4, dim=dim, make_mix=partial(conv_mix, convs=2))
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


@pytest.mark.parametrize("make_mix, block", [(conv_mix, ["Conv2d"]), (separable_mix, ["Conv2d", "Conv2d"])])
@pytest.mark.parametrize("convs", [0, 1, 3])
def test_the_mix_holds_the_asked_convolutions_and_adds_to_the_fused_map(convs, make_mix, block):
    """convs 3x3 convolutions (separable: depthwise then pointwise), ReLU between them, each
    normalised; the fine tokens are the projection plus the upsampled memory plus the mix of
    that sum (none with 0)."""
    layer = FineLevel(channels=4, dim=8, make_mix=partial(make_mix, convs=convs))
    kinds = [type(m).__name__ for m in (layer.mix or [])]
    one = block + ["GroupNorm", "ReLU"]
    assert kinds == (one * convs)[:max(len(one) * convs - 1, 0)]
    fine_map, memory = torch.randn(1, 4, 4, 6), torch.randn(1, 6, 8)
    tokens, _, _ = layer(fine_map, memory, (2, 3), None, SinePositionEncoding(8))
    upsampled = memory.transpose(1, 2).unflatten(2, (2, 3)).repeat_interleave(2, 2).repeat_interleave(2, 3)
    fused = layer.project(fine_map) + upsampled
    expected = fused + layer.mix(fused) if convs else fused
    torch.testing.assert_close(tokens, expected.flatten(2).transpose(1, 2))


def test_two_convolutions_keep_the_state_names_and_a_mix_without_fine_level_is_refused():
    names = {n for n in build_model(_fine_config()).state_dict() if n.startswith("fine_level.mix")}
    assert names == {f"fine_level.mix.{i}.{p}" for i in (0, 1, 3, 4) for p in ("weight", "bias")}
    with pytest.raises(ValueError, match="set model.fine_level=True"):
        build_model(tiny_model_config(fine_level_convs=1))
    with pytest.raises(ValueError, match="set model.fine_level=True"):
        build_model(tiny_model_config(fine_level_mix="separable"))
    with pytest.raises(ValueError, match="'conv' or 'separable'"):
        build_model(_fine_config(fine_level_mix="depthwise"))
    with pytest.raises(ValueError, match="fine_level_convs=0 leaves none"):
        build_model(_fine_config(fine_level_mix="separable", fine_level_convs=0))


def test_the_separable_mix_is_a_depthwise_then_a_pointwise_convolution():
    """Against an independent composition: a 3x3 convolution of each channel alone (its own
    kernel, the unfold of that channel), then the 1x1 across channels, then the GroupNorm."""
    torch.manual_seed(0)
    dim = 8
    mix = separable_mix(dim, 1)
    depthwise, pointwise, norm = mix
    assert depthwise.weight.shape == (dim, 1, 3, 3) and pointwise.weight.shape == (dim, dim, 1, 1)
    x = torch.randn(2, dim, 5, 7)
    patches = torch.nn.functional.unfold(x, kernel_size=3, padding=1).view(2, dim, 9, 5 * 7)
    per_channel = (patches * depthwise.weight.view(1, dim, 9, 1)).sum(2) + depthwise.bias.view(1, dim, 1)
    mixed = torch.einsum("oc,bcp->bop", pointwise.weight.view(dim, dim), per_channel) + pointwise.bias.view(1, dim, 1)
    expected = torch.nn.functional.group_norm(mixed.view(2, dim, 5, 7), norm.num_groups, norm.weight, norm.bias,
                                              norm.eps)
    torch.testing.assert_close(mix(x), expected, atol=1e-5, rtol=1e-4)
    model = build_model(_fine_config(fine_level_mix="separable", fine_level_convs=2))
    separable = sum(p.numel() for p in model.fine_level.mix.parameters())
    full = sum(p.numel() for p in build_model(_fine_config()).fine_level.mix.parameters())
    assert separable < full / 3


def test_a_checkpoint_from_before_the_mix_setting_loads_its_full_convolutions():
    """Checkpoints written before `model.fine_level_mix` existed hold full 3x3 convolutions and no
    such field: read back, their config builds that mix, and their weights load into it."""
    from detr.config.schema import ExperimentConfig

    config = ExperimentConfig()
    config.model = _fine_config()
    written = build_model(config.model).state_dict()
    stored = config.to_dict()
    del stored["model"]["fine_level_mix"]
    read = ExperimentConfig.from_dict(stored)
    assert read.model.fine_level_mix == "conv"
    build_model(read.model).load_state_dict(written)  # strict: every tensor in its place


def test_a_deformable_decoder_gets_fine_tokens_without_positions_and_every_parameter_learns():
    """Deformable attention samples by location: the fine level computes no positions and holds
    no level embedding, so that no parameter goes without a gradient (which multi-process
    training would have to search for every step). A seed gives the parts made before the
    transformer the weights it gives them with full attention (the embedding's draw is kept), and
    checkpoints that still hold the embedding load."""
    torch.manual_seed(0)
    deformable = build_model(_fine_config(decoder_attention="deformable")).train()
    torch.manual_seed(0)
    full = build_model(_fine_config(decoder_attention="full"))
    assert deformable.fine_level.level_embed is None and full.fine_level.level_embed is not None
    made_before = ("backbone.", "fine_level.", "input_proj.", "queries.")
    before = [n for n in deformable.state_dict() if n.startswith(made_before)]
    assert any(n.startswith("input_proj.") for n in before)  # made after the fine level
    for name in before:
        torch.testing.assert_close(deformable.state_dict()[name], full.state_dict()[name])
    images, mask = torch.randn(2, 3, 64, 96), torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 48:] = True
    out = deformable(images, mask)
    (out.logits.sum() + out.boxes.sum() + sum(a.logits.sum() + a.boxes.sum() for a in out.aux)
     + out.proposals.logits.sum() + out.proposals.boxes.sum()).backward()
    assert [n for n, p in deformable.named_parameters() if p.requires_grad and p.grad is None] == []
    written = deformable.state_dict()
    written["fine_level.level_embed"] = full.fine_level.level_embed.detach()
    deformable.load_state_dict(written)  # strict


def test_a_checkpoint_without_mixing_convolutions_but_a_mix_kind_reads_as_the_same_model():
    """Older versions kept `fine_level_mix='separable'` beside `fine_level_convs=0` (no mix at all),
    which is refused now: such a checkpoint's config reads back as 'conv' and its weights load."""
    from detr.config.schema import ExperimentConfig

    config = ExperimentConfig()
    config.model = _fine_config(fine_level_convs=0)
    written = build_model(config.model).state_dict()
    stored = config.to_dict()
    stored["model"]["fine_level_mix"] = "separable"
    read = ExperimentConfig.from_dict(stored)
    assert (read.model.fine_level_convs, read.model.fine_level_mix) == (0, "conv")
    build_model(read.model).load_state_dict(written)  # strict: every tensor in its place
