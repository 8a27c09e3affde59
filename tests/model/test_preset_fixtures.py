"""Each preset's model computes what it computed when its fixture was made: the eval outputs and
detections on a fixed batch, and the losses of the first training steps from the stored weights.
How the fixtures were made: tests/fixtures/make_preset_fixtures.py."""

from __future__ import annotations

import pytest
import torch

from detr.model import build_model
from tests.fixtures.make_preset_fixtures import (FOLDER, PRESETS, SEED, _compressible_backbone, eval_outputs,
                                                 load_fixture_model, tiny_config, train_losses)

# Between an Intel Xeon and an AMD EPYC the outputs differed by up to 6e-7 (logits) and the detections'
# pixel boxes by 1.5e-5; a weight moved by 1e-3 moves them by about 1e-3 (the test below).
OUTPUT_TOLERANCE = 1e-5
# The detections' boxes are pixels: the normalised outputs' tolerance times the images' size (96 px).
BOX_PIXEL_TOLERANCE = 1e-3
LOSS_TOLERANCE = 1e-5
# Steps compared at LOSS_TOLERANCE. The fixtures hold one CPU's rounding, and a CPU of another kind
# (other vector units, so other oneDNN kernels) rounds otherwise: measured between an Intel Xeon and an
# AMD EPYC, the losses agreed within 3e-6 for the first 10 steps, then re-matching amplified the
# difference to 1e-5 by step 12 and 0.1 by step 30. A changed weight or learning rate shows at once.
COMPARED_STEPS = 10


@pytest.fixture(autouse=True)
def _one_thread():
    """The fixtures were summed on one thread; more threads may sum in another order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load(name: str, tmp_path):
    model, config = load_fixture_model(name, scratch=tmp_path)
    expected = torch.load(FOLDER / f"{name}.expected.pt", weights_only=True)
    data = torch.load(FOLDER / "inputs.pt", weights_only=True)
    return model, config, expected, data


def _assert_outputs(actual: dict, expected: dict) -> None:
    for key in ("pred_logits", "pred_boxes", "aux_logits", "aux_boxes", "scores", "labels", "boxes"):
        tolerance = BOX_PIXEL_TOLERANCE if key == "boxes" else OUTPUT_TOLERANCE
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=tolerance, msg=key)


def _assert_losses(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=LOSS_TOLERANCE)


@pytest.mark.parametrize("name", PRESETS)
def test_eval_outputs_and_detections_are_unchanged(name, tmp_path):
    model, config, expected, data = _load(name, tmp_path)
    _assert_outputs(eval_outputs(model, config, data), expected)


@pytest.mark.parametrize("name", PRESETS)
def test_the_first_training_steps_lose_what_they_lost(name, tmp_path):
    model, config, expected, data = _load(name, tmp_path)
    losses = expected["losses"]
    assert len(losses) == 50 and not torch.allclose(losses[0], losses[-1])  # the stored run did learn
    _assert_losses(train_losses(model, config, data, steps=COMPARED_STEPS), losses[:COMPARED_STEPS])


def test_a_changed_weight_or_learning_rate_is_noticed(tmp_path):
    """The comparisons can fail: one weight moved by 1e-3, or the lr x1.01 over six steps (still in the warm-up)."""
    model, config, expected, data = _load("fast_fine", tmp_path)
    with torch.no_grad():
        model.class_embed.weight[0, 0] += 1e-3
    with pytest.raises(AssertionError):
        _assert_outputs(eval_outputs(model, config, data), expected)

    model, config, expected, data = _load("fast_fine", tmp_path)
    config.train.lr *= 1.01
    with pytest.raises(AssertionError):
        _assert_losses(train_losses(model, config, data, steps=6), expected["losses"][:6])


@pytest.mark.parametrize("name", PRESETS)
def test_a_seed_builds_the_initial_weights_it_built_before(name, tmp_path):
    """The builders create the parts in the order the model did when the fixtures were made, so
    a seed gives the same initial weights and a run started from a seed learns as it did."""
    stored, _ = load_fixture_model(name, scratch=tmp_path)
    torch.manual_seed(SEED)
    fresh = build_model(tiny_config(name).model)
    _compressible_backbone(fresh, torch.Generator().manual_seed(SEED))
    expected = stored.state_dict()
    differ = [key for key, value in fresh.state_dict().items() if not torch.equal(value, expected[key])]
    assert not differ
