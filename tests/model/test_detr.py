import pytest
import torch

from detr.config import preset
from detr.model import build_model
from tests.conftest import tiny_model_config


@pytest.mark.parametrize("name, expected", [("detr_r50", 41_524_768), ("detr_r101", 60_464_672)])
def test_paper_parameter_counts(name, expected):
    config = preset(name).model
    config.backbone.pretrained = False
    model = build_model(config)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_output_shapes_and_aux():
    model = build_model(tiny_model_config()).eval()
    out = model(torch.randn(2, 3, 64, 80))
    assert out.logits.shape == (2, 6, 4)
    assert out.boxes.shape == (2, 6, 4)
    assert ((out.boxes > 0) & (out.boxes < 1)).all()
    assert len(out.aux) == 1
    assert out.aux[0].boxes.shape == (2, 6, 4)


@pytest.mark.parametrize("pre_norm", [False, True])
@pytest.mark.parametrize("encoding", ["sine", "learned"])
def test_padded_feature_values_do_not_change_outputs(pre_norm, encoding):
    model = build_model(tiny_model_config(pre_norm=pre_norm, position_encoding=encoding)).eval()
    images = torch.randn(2, 3, 64, 96)
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[0, 32:, :] = True
    mask[0, :, 48:] = True

    def scramble_padding(module, inputs, output):
        features, feature_mask = output
        noise = torch.randn_like(features) * 100
        return torch.where(feature_mask[:, None], noise, features), feature_mask

    clean = model(images, mask)
    handle = model.backbone.register_forward_hook(scramble_padding)
    scrambled = model(images, mask)
    handle.remove()
    torch.testing.assert_close(scrambled.logits, clean.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scrambled.boxes, clean.boxes, atol=1e-5, rtol=1e-5)


def test_attention_capture_leaves_outputs_identical():
    model = build_model(tiny_model_config()).eval()
    images = torch.randn(2, 3, 64, 96)
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 64:] = True
    plain = model(images, mask)
    captured = model(images, mask, need_weights=True)
    assert torch.equal(plain.logits, captured.logits)
    assert torch.equal(plain.boxes, captured.boxes)
    maps = captured.attention
    h, w = captured.feature_shape
    assert len(maps.encoder) == 2 and maps.encoder[0].shape == (2, 4, h * w, h * w)
    assert maps.decoder_cross[-1].shape == (2, 4, 6, h * w)
    padded_keys = torch.nn.functional.interpolate(mask[None].float(), size=(h, w)).bool()[0].flatten(1)
    for weights in maps.encoder + maps.decoder_cross:
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        assert torch.all(weights[1][..., padded_keys[1]] == 0)


def test_gradients_reach_trainable_parameters_only():
    from detr.config import LossConfig
    from detr.loss import SetCriterion

    model = build_model(tiny_model_config())
    with torch.no_grad():  # biases start at zero; make every path carry signal
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0, 0.1)
    criterion = SetCriterion(3, LossConfig())
    targets = [
        {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.4]])},
        {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.5, 0.5]])},
    ]
    criterion(model(torch.randn(2, 3, 64, 64)), targets)["loss"].backward()
    # The first decoder self-attention sees zeros as values (the decoder input
    # is zero), so its output does not depend on q, k or the value weights: a
    # property of the architecture, not a broken graph.
    exactly_zero = "transformer.decoder_layers.0.self_attn.in_proj_weight"
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, name
            if name == exactly_zero:
                assert parameter.grad.abs().sum() < 1e-4  # float rounding only
            else:
                assert parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name
    assert any(not p.requires_grad for p in model.parameters())
