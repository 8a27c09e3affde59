import numpy as np
import pytest
import torch

from detr.config import DataConfig
from detr.data.collate import pad_images
from detr.inference import Predictor, to_uint8_image
from detr.model import build_model
from detr.viz.attention import decoder_attention
from detr.viz.capture import capture, fold_fine_level
from detr.viz.encoder import Point, encoder_attention
from tests.conftest import tiny_model_config


def test_capture_leaves_outputs_identical_and_agrees_with_predict(predictor, image, cap):
    batch, mask = pad_images([predictor.prepare(to_uint8_image(image))])
    with torch.inference_mode():
        plain = predictor.model(batch, mask)
    assert torch.equal(plain.logits[0], cap.logits)
    assert torch.equal(plain.boxes[0], cap.boxes)
    detections = predictor.predict(image, threshold=0.0)
    np.testing.assert_allclose(np.sort(cap.scores)[::-1], detections.scores.numpy(), rtol=1e-6)
    np.testing.assert_allclose(cap.boxes_xyxy[cap.top(6)], detections.boxes.numpy(), rtol=1e-5, atol=1e-4)


def test_weights_sum_to_one_and_padded_keys_get_zero(predictor):
    images = [torch.randn(3, 64, 96), torch.randn(3, 48, 64)]
    batch, mask = pad_images(images)
    with torch.inference_mode():
        out = predictor.model(batch, mask, need_weights=True)
    h, w = out.feature_shape
    padded = torch.nn.functional.interpolate(mask[None].float(), size=(h, w)).bool()[0].flatten(1)
    assert padded[1].any() and not padded[0].any()
    maps = out.attention
    for weights in maps.encoder + maps.decoder_cross + maps.decoder_self:
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    for weights in maps.encoder + maps.decoder_cross:
        assert torch.all(weights[1][..., padded[1]] == 0)


def test_head_averaged_maps_are_distributions(cap):
    for weights in cap.attention.decoder_cross + cap.attention.encoder:
        torch.testing.assert_close(weights.mean(0).sum(-1), torch.ones(weights.shape[1]))


def test_maps_cover_the_original_image(cap):
    height, width = cap.size
    assert (height, width) == (60, 100) and cap.input_size == (64, 106) and cap.feature_shape == (4, 7)
    assert decoder_attention(cap, [0, 3]).shape == (2, height, width)
    assert decoder_attention(cap, [1], layer=0, per_head=True).shape == (1, 4, height, width)
    assert encoder_attention(cap, [Point(5, 5)], size=(30, 50)).shape == (1, 30, 50)
    uniform = cap.to_image(np.ones(28))
    np.testing.assert_allclose(uniform, 1.0, rtol=1e-6)


def test_a_token_lands_under_its_own_pixels(cap):
    """A one-hot token map peaks at that token's cell centre, and token_at inverts token_centres."""
    centres = cap.token_centres()
    for token in (0, 9, 27):
        assert cap.token_at(*centres[token]) == token
        heat = cap.to_image(np.eye(28)[token])
        y, x = np.unravel_index(heat.argmax(), heat.shape)
        assert abs(x - centres[token][0]) < 8 and abs(y - centres[token][1]) < 8


def test_last_token_column_reaches_past_the_input(cap):
    """7 tokens x 16 px = 112 > 106 input columns: the last column is cut, not stretched."""
    last_column = np.zeros((4, 7))
    last_column[:, 6] = 1
    heat = cap.to_image(last_column.ravel())
    covered = np.flatnonzero(heat[30] > 0.5)
    expected_start = 6 * 16 * 100 / 106
    assert abs(covered[0] - expected_start) <= 2 and covered[-1] == 99


def test_bad_layer_and_point_are_clear_errors(cap):
    with pytest.raises(ValueError, match="2 decoder layers"):
        decoder_attention(cap, [0], layer=2)
    with pytest.raises(ValueError, match="outside the 100x60 image"):
        encoder_attention(cap, [Point(150, 10)])


def test_capture_runs_from_a_path(predictor, image, tmp_path):
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "x.png")
    assert capture(predictor, tmp_path / "x.png").image.shape == (60, 100, 3)


def test_fine_level_attention_folds_each_fine_cell_into_its_coarse_parent(predictor, image):
    # Reference by loops: fine cell (i, j) of an H x W grid comes from coarse cell
    # (floor(i h / H), floor(j w / W)) of the h x w grid, as nearest upsampling reads it.
    fine_shape, coarse_shape = (5, 6), (3, 3)
    weights = torch.rand(2, 4, 30 + 9).softmax(-1)
    expected = weights[..., 30:].clone()
    for i in range(5):
        for j in range(6):
            parent = (i * 3 // 5) * 3 + j * 3 // 6
            expected[..., parent] += weights[..., i * 6 + j]
    torch.testing.assert_close(fold_fine_level(weights, fine_shape, coarse_shape), expected)

    torch.manual_seed(0)
    model = build_model(tiny_model_config(queries="selected", fine_level=True)).eval()
    fine = capture(Predictor(model, predictor.categories, DataConfig(val_scale=64, max_size=128), "cpu"), image)
    tokens = fine.feature_shape[0] * fine.feature_shape[1]
    for weights in fine.attention.decoder_cross:
        assert weights.shape[-1] == tokens
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert decoder_attention(fine, [0]).shape == (1, 60, 100)
