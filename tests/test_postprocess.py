import pytest
import torch

from detr.model import build_model
from detr.model.outputs import Predictions
from detr.model.class_scoring import ClassScoring
from detr.postprocess import PostProcess
from tests.conftest import tiny_model_config


def _outputs():
    logits = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 3.0, 0.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.1, 0.1], [0.25, 0.75, 0.5, 0.5]]])
    return Predictions(logits, boxes)


def test_scores_labels_and_pixel_boxes():
    result = PostProcess()(_outputs(), torch.tensor([[100, 200]]))[0]
    prob = _outputs().logits[0].softmax(-1)[:, :2]
    expected_scores, expected_labels = prob.max(-1)
    order = expected_scores.argsort(descending=True)
    torch.testing.assert_close(result["scores"], expected_scores[order])
    assert result["labels"].tolist() == expected_labels[order].tolist()
    first = result["boxes"][(order == 0).nonzero()[0, 0]]
    # cx=0.5, w=0.2 of width 200; cy=0.5, h=0.4 of height 100
    torch.testing.assert_close(first, torch.tensor([80.0, 30.0, 120.0, 70.0]))


def test_threshold_and_top_k():
    sizes = torch.tensor([[100, 200]])
    scores = PostProcess()(_outputs(), sizes)[0]["scores"]
    kept = PostProcess(threshold=float(scores[1]))(_outputs(), sizes)[0]
    assert len(kept["scores"]) == 2
    assert len(PostProcess(top_k=1)(_outputs(), sizes)[0]["scores"]) == 1


def _random_outputs(seed: int, batch: int = 2, queries: int = 5, classes: int = 3):
    generator = torch.Generator().manual_seed(seed)
    return Predictions(3 * torch.randn(batch, queries, classes + 1, generator=generator),
                       torch.rand(batch, queries, 4, generator=generator) * 0.5 + 0.25)


def test_class_pairs_are_the_best_query_class_pairs_found_by_listing_them_all():
    outputs, sizes = _random_outputs(1), torch.tensor([[100, 200], [50, 60]])
    for class_pairs, expected_count in ((7, 7), (3, 5), (100, 15)):  # at least the 5 queries, at most 5 x 3
        results = PostProcess(scoring=ClassScoring(class_pairs))(outputs, sizes)
        for image, result in enumerate(results):
            logits = outputs.logits[image]
            probabilities = logits.softmax(-1)[:, :-1]
            pairs = sorted(((float(probabilities[q, c]), q, c) for q in range(5) for c in range(3)), reverse=True)
            pairs = pairs[:expected_count]
            height, width = sizes[image].tolist()
            assert len(result["scores"]) == expected_count
            torch.testing.assert_close(result["scores"], torch.tensor([p for p, _, _ in pairs]))
            assert result["labels"].tolist() == [c for _, _, c in pairs]
            for box, (_, query, _) in zip(result["boxes"], pairs):
                cx, cy, w, h = outputs.boxes[image, query].tolist()
                torch.testing.assert_close(box, torch.tensor([(cx - w / 2) * width, (cy - h / 2) * height,
                                                              (cx + w / 2) * width, (cy + h / 2) * height]))


def test_class_pairs_keep_the_same_detections_at_a_threshold_of_one_half():
    sizes, compared = torch.tensor([[100, 200], [50, 60]]), 0
    for seed in range(5):
        outputs = _random_outputs(seed, queries=8)
        plain = PostProcess(threshold=0.5)(outputs, sizes)
        paired = PostProcess(threshold=0.5, scoring=ClassScoring(4))(outputs, sizes)
        for a, b in zip(plain, paired):
            compared += len(a["scores"])
            torch.testing.assert_close(a["scores"], b["scores"])
            assert a["labels"].tolist() == b["labels"].tolist()
            torch.testing.assert_close(a["boxes"], b["boxes"])
    assert compared > 10  # random logits of this scale put many queries above one half


def test_a_negative_class_pair_count_is_refused_by_the_model():
    with pytest.raises(ValueError, match="model.class_pairs is 0"):
        build_model(tiny_model_config(class_pairs=-1))
