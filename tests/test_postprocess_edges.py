"""PostProcess at its edges: one class pair per query, half-precision outputs (autocast,
fp16 export), batches of different image sizes, a threshold above everything, and the
one-line error for mismatched sizes. Expected values are computed element by element
here, with torchvision's box conversion for the boxes."""

import pytest
import torch
from torch.utils._pytree import tree_map
from torchvision.ops import box_convert

from detr.model.outputs import Predictions
from detr.model.class_scoring import ClassScoring
from detr.postprocess import PostProcess


def _outputs(seed: int, batch: int = 2, queries: int = 5, classes: int = 3):
    generator = torch.Generator().manual_seed(seed)
    return Predictions(3 * torch.randn(batch, queries, classes + 1, generator=generator),
                       torch.rand(batch, queries, 4, generator=generator) * 0.5 + 0.25)


def _pixel_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return box_convert(boxes.float(), "cxcywh", "xyxy") * torch.tensor([width, height, width, height])


def test_each_image_is_scaled_by_its_own_size():
    outputs, sizes = _outputs(0), torch.tensor([[100, 200], [30, 70]])
    results = PostProcess()(outputs, sizes)
    for image, result in enumerate(results):
        probabilities = outputs.logits[image].softmax(-1)[:, :-1]
        scores, labels = probabilities.max(-1)
        order = scores.argsort(descending=True)
        height, width = sizes[image].tolist()
        torch.testing.assert_close(result["scores"], scores[order])
        assert result["labels"].tolist() == labels[order].tolist()
        torch.testing.assert_close(result["boxes"], _pixel_boxes(outputs.boxes[image][order], height, width))


def test_one_class_pair_per_query_is_the_best_pairs_not_each_query_best_class():
    """class_pairs=1 still lists pairs (at least N of them), so a query may appear twice."""
    outputs, sizes = _outputs(3, batch=1, queries=4), torch.tensor([[50, 50]])
    outputs.logits[0] = torch.tensor([[5.0, 4.9, -5, 0], [-5, -5, -5, 5], [-5, -5, -5, 5], [0, -5, -5, 0.5]])
    result = PostProcess(scoring=ClassScoring(1))(outputs, sizes)[0]
    probabilities = outputs.logits[0].softmax(-1)[:, :-1]
    best = sorted(((float(probabilities[q, c]), q, c) for q in range(4) for c in range(3)), reverse=True)[:4]
    torch.testing.assert_close(result["scores"], torch.tensor([p for p, _, _ in best]))
    assert result["labels"].tolist() == [c for _, _, c in best]
    assert [q for _, q, _ in best][:2] == [0, 0]  # the torn query offers its box under both classes
    for box, (_, query, _) in zip(result["boxes"], best, strict=True):
        torch.testing.assert_close(box, _pixel_boxes(outputs.boxes[0, query][None], 50, 50)[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("class_pairs", [0, 6])
def test_half_precision_outputs_give_fp32_detections(dtype, class_pairs):
    """Scores and boxes are computed in fp32 from the (rounded) half values."""
    outputs = tree_map(lambda value: value.to(dtype), _outputs(4))
    sizes = torch.tensor([[100, 200], [30, 70]])
    results = PostProcess(scoring=ClassScoring(class_pairs))(outputs, sizes)
    upcast = tree_map(lambda value: value.float(), outputs)
    expected = PostProcess(scoring=ClassScoring(class_pairs))(upcast, sizes)
    for result, reference in zip(results, expected, strict=True):
        assert result["scores"].dtype == result["boxes"].dtype == torch.float32
        torch.testing.assert_close(result["scores"], reference["scores"], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(result["boxes"], reference["boxes"], atol=1e-4, rtol=1e-6)
    for image, reference in enumerate(expected):  # and the fp32 reading is the element-wise one
        probabilities = upcast.logits[image].softmax(-1)[:, :-1]
        if not class_pairs:
            torch.testing.assert_close(reference["scores"], probabilities.max(-1).values.sort(descending=True).values)


def test_class_probabilities_of_half_logits_are_fp32():
    logits = _outputs(5).logits.to(torch.bfloat16)
    probabilities = ClassScoring().probabilities(logits)
    expected = logits.float().softmax(-1)[..., :-1]
    assert probabilities.dtype == torch.float32
    torch.testing.assert_close(probabilities, expected, atol=1e-7, rtol=1e-6)
    scores, labels = ClassScoring().best(logits)
    torch.testing.assert_close(scores, expected.max(-1).values)
    assert torch.equal(labels, expected.argmax(-1))


def test_scored_boxes_keep_query_order_without_class_pairs():
    outputs, sizes = _outputs(6), torch.tensor([[100, 200], [30, 70]])
    scores, labels, boxes = ClassScoring().scored_boxes(outputs.logits, outputs.boxes, sizes)
    probabilities = outputs.logits.softmax(-1)[..., :-1]
    torch.testing.assert_close(scores, probabilities.max(-1).values)
    assert torch.equal(labels, probabilities.argmax(-1))
    for image in range(2):
        height, width = sizes[image].tolist()
        torch.testing.assert_close(boxes[image], _pixel_boxes(outputs.boxes[image], height, width))


def test_a_threshold_above_every_score_gives_empty_detections_of_the_right_shape():
    result = PostProcess(threshold=1.01)(_outputs(7), torch.tensor([[100, 200], [30, 70]]))
    for image in result:
        assert image["scores"].shape == (0,) and image["labels"].shape == (0,) and image["boxes"].shape == (0, 4)


def test_top_k_applies_after_the_threshold_and_keeps_the_best():
    outputs, sizes = _outputs(8, batch=1, queries=8), torch.tensor([[100, 200]])
    everything = PostProcess()(outputs, sizes)[0]
    threshold = float(everything["scores"][4])
    kept = PostProcess(threshold=threshold, top_k=3)(outputs, sizes)[0]
    torch.testing.assert_close(kept["scores"], everything["scores"][:3])
    torch.testing.assert_close(kept["boxes"], everything["boxes"][:3])
    fewer = PostProcess(threshold=float(everything["scores"][1]), top_k=3)(outputs, sizes)[0]
    torch.testing.assert_close(fewer["scores"], everything["scores"][:2])


def test_image_sizes_for_another_batch_are_a_clear_error():
    with pytest.raises(ValueError, match="1 image sizes for 2 predictions"):
        PostProcess()(_outputs(9), torch.tensor([[100, 200]]))


def test_the_defaults_are_the_papers_softmax_reading():
    logits = _outputs(10).logits
    probabilities = logits.softmax(-1)[..., :-1]
    torch.testing.assert_close(ClassScoring().probabilities(logits), probabilities)
    scores, labels = ClassScoring().best(logits)
    torch.testing.assert_close(scores, probabilities.max(-1).values)
    assert torch.equal(labels, probabilities.argmax(-1))


def test_image_sizes_on_the_host_scale_outputs_on_another_device():
    """Sizes usually stay on the host while outputs sit on the accelerator; the meta device
    stands in for it here (a host tensor times a meta one is an error, as with CUDA)."""
    outputs = tree_map(lambda value: value.to("meta"), _outputs(11))
    for class_pairs in (0, 6):
        scores, labels, boxes = ClassScoring(class_pairs).scored_boxes(outputs.logits, outputs.boxes,
                                                                   torch.tensor([[100, 200], [30, 70]]))
        assert scores.device.type == labels.device.type == boxes.device.type == "meta"
        assert boxes.shape == (2, max(class_pairs, 5), 4)
