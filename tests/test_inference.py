import numpy as np
import pytest
import torch
from PIL import Image

from detr.config import DataConfig
from detr.data.coco import Categories
from detr.inference import Predictor
from detr.model import build_model
from tests.conftest import tiny_model_config


@pytest.fixture
def predictor():
    model = build_model(tiny_model_config(num_classes=2))
    return Predictor(model, Categories((4, 8), ("ant", "bee")), DataConfig(val_scale=64, max_size=128), "cpu")


def test_path_pil_array_and_tensor_give_the_same_detections(predictor, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    inputs = [tmp_path / "x.png", Image.fromarray(pixels), pixels, torch.from_numpy(pixels).permute(2, 0, 1),
              torch.from_numpy(pixels).permute(2, 0, 1).float() / 255]
    results = [predictor.predict(i, threshold=0.0) for i in inputs]
    for other in results[1:]:
        torch.testing.assert_close(other.boxes, results[0].boxes)
        torch.testing.assert_close(other.scores, results[0].scores)
    first = results[0]
    assert len(first.scores) == 6 and set(first.names) <= {"ant", "bee"}
    assert (first.boxes[:, 2] <= 80 + 1e-3).all() and (first.boxes[:, 3] <= 48 + 1e-3).all()
    assert first.category_ids == [{"ant": 4, "bee": 8}[n] for n in first.names]


def test_bad_input_is_a_clear_error(predictor):
    with pytest.raises(ValueError, match="takes a path"):
        predictor.predict(torch.zeros(1, 3, 2, 2))  # a batch is a list of images, not a 4-D tensor


def test_bf16_predictions_stay_near_fp32(predictor):
    pixels = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    exact = predictor.predict(pixels, threshold=0.0)
    half = Predictor(predictor.model, predictor.categories, DataConfig(val_scale=64, max_size=128), "cpu",
                     precision="bf16").predict(pixels, threshold=0.0)
    # Sorted by score, so compare as sets of boxes: each fp32 box has a bf16 box within
    # 1e-2 of the image size. Random weights spread boxes widely, so this is a real check.
    scale = torch.tensor([96, 64, 96, 64])
    distance = ((exact.boxes[:, None] - half.boxes[None]).abs() / scale).amax(-1).min(1).values
    assert distance.max() < 1e-2
    assert not torch.equal(exact.boxes, half.boxes)  # bf16 really ran
    assert exact.boxes.dtype == half.boxes.dtype == torch.float32


def test_unknown_precision_is_refused(predictor):
    with pytest.raises(ValueError, match="precision must be one of"):
        Predictor(predictor.model, predictor.categories, DataConfig(), "cpu", precision="fp8")


def _distinct_queries_predictor():
    """The default preset's query path: query selection with NMS over the proposals, whose
    output size depends on the data (a graph break for torch.compile, not an error)."""
    torch.manual_seed(0)
    model = build_model(tiny_model_config(num_classes=2, queries="selected",
                                          distinct_queries=0.5)).eval()
    return Predictor(model, Categories((4, 8), ("ant", "bee")), DataConfig(val_scale=64, max_size=128), "cpu")


@pytest.mark.parametrize("make", [lambda fixture: fixture, lambda fixture: _distinct_queries_predictor()],
                         ids=["paper", "distinct_queries"])
def test_compiled_predictor_matches_eager_on_two_image_sizes(predictor, make):
    predictor = make(predictor)
    compiled = Predictor(predictor.model, predictor.categories, DataConfig(val_scale=64, max_size=128), "cpu",
                         compile=True)
    for seed, shape in ((1, (64, 96, 3)), (2, (48, 80, 3))):  # the second size reuses the dynamic graph
        pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
        eager, fast = predictor.predict(pixels, threshold=0.0), compiled.predict(pixels, threshold=0.0)
        torch.testing.assert_close(fast.boxes, eager.boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(fast.scores, eager.scores, atol=1e-5, rtol=0)


def test_load_passes_precision_through(tmp_path):
    import detr
    from detr.weights import write_weights
    from tests.weights.helpers import tiny_weights

    folder = write_weights(tiny_weights(), tmp_path / "model", "ours")
    assert detr.load(folder, "cpu", precision="bf16").precision == "bf16"
    assert detr.load(folder, "cpu").precision == "fp32"


def test_an_unpadded_batch_runs_without_a_mask_and_a_padded_one_gives_each_image_alone():
    """One image (or images of one size) has no padding: the model runs unmasked, without the
    mask's products before every convolution. Padded with a larger image, each image still gets
    the detections it gets alone (the default's exact padding)."""
    model = build_model(tiny_model_config(num_classes=2, queries="selected", fine_level=True,
                                          decoder_attention="deformable")).eval()
    predictor = Predictor(model, Categories((4, 8), ("ant", "bee")), DataConfig(val_scale=64, max_size=128), "cpu")
    masks = []
    forward = predictor.forward
    predictor.forward = lambda images, mask: masks.append(mask) or forward(images, mask)
    rng = np.random.default_rng(1)
    small, large = (rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(64, 80, 3), (64, 112, 3)])
    alone = predictor.predict(small, threshold=0.0)
    batched = predictor.predict_batch([small, large], threshold=0.0)[0]
    assert masks[0] is None and masks[1] is not None and masks[1].any()
    torch.testing.assert_close(batched.boxes, alone.boxes, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batched.scores, alone.scores, atol=1e-4, rtol=1e-4)


def test_a_batch_of_wide_and_tall_images_runs_as_two_batches_that_give_each_image_alone():
    """predict_batch runs images of like shapes together (data/collate.batches_by_size): two wide
    and two tall images make two unpadded batches, and each image gets its detections alone, in
    the order given."""
    model = build_model(tiny_model_config(num_classes=2, queries="selected", fine_level=True,
                                          decoder_attention="deformable")).eval()
    predictor = Predictor(model, Categories((4, 8), ("ant", "bee")), DataConfig(val_scale=64, max_size=128), "cpu")
    calls = []
    forward = predictor.forward
    predictor.forward = lambda images, mask: calls.append((images.shape[0], mask)) or forward(images, mask)
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(64, 112, 3), (112, 64, 3)] * 2]
    batched = predictor.predict_batch(images, threshold=0.0)
    assert [(size, mask) for size, mask in calls] == [(2, None), (2, None)]
    for image, got in zip(images, batched):
        alone = predictor.predict(image, threshold=0.0)
        torch.testing.assert_close(got.boxes, alone.boxes, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got.scores, alone.scores, atol=1e-4, rtol=1e-4)
    assert predictor.predict_batch([], threshold=0.0) == []
