"""Every figure is a PNG of the expected size that is not blank, and its numbers make sense."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from detr.model.position_encoding import LearnedPositionEncoding
from detr.viz.attention import plot_decoder_attention
from detr.viz.detections import detected_objects, plot_detections
from detr.viz.encoder import Point, _distance_to_boxes, default_points, plot_encoder_attention
from detr.viz.figure import figure_pixels
from detr.viz.matching import GroundTruth, match_ground_truth, plot_matching
from detr.viz.positional import plot_positional_encoding, positional_maps
from detr.viz.queries import collect_query_boxes, plot_query_specialisation


def assert_png(path, rows, cols, panel=None):
    with Image.open(path) as png:
        expected = figure_pixels(rows, cols) if panel is None else figure_pixels(rows, cols, panel)
        assert png.size == expected
        assert np.asarray(png.convert("L")).std() > 10, f"{path} looks blank"


def test_detections(cap, tmp_path):
    cap = replace(cap, threshold=float(np.sort(cap.scores)[-2]))  # two detections
    found = detected_objects(cap)
    assert len(found.queries) == 2 and found.scores[0] >= found.scores[1]
    assert found.names[0] in cap.class_names and found.boxes.shape == (2, 4)
    assert_png(plot_detections(cap, tmp_path / "d.png"), 1, 1, 5.0)


@pytest.mark.parametrize("per_head", [False, True])
def test_decoder_attention_of_objects_and_losing_queries(cap, tmp_path, per_head):
    cols = 1 + (4 if per_head else 1)
    assert_png(plot_decoder_attention(cap, cap.top(2), tmp_path / "o.png", per_head=per_head), 2, cols)
    assert_png(plot_decoder_attention(cap, cap.losing(3), tmp_path / "l.png", layer=0, per_head=per_head), 3, cols)


def test_default_points_are_background_far_near_and_on_objects(cap):
    points = default_points(cap)
    assert len(points) == 4
    boxes = cap.boxes_xyxy[cap.top(2)]
    distance = _distance_to_boxes(np.array([[p.x, p.y] for p in points]), boxes)
    if (distance[:2] > 0).all():  # the background points lie outside the objects when any cell does
        assert distance[0] >= distance[1]
    assert (distance[2:] == 0).all()


def test_encoder_attention(cap, tmp_path):
    assert_png(plot_encoder_attention(cap, default_points(cap), tmp_path / "e.png"), 1, 5)
    chosen = [Point(10, 10), Point(70, 30)]
    assert_png(plot_encoder_attention(cap, chosen, tmp_path / "p.png", layer=0, per_head=True), 2, 5)


def test_query_specialisation_over_padded_batches(predictor, tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size, dtype=np.uint8) for size in [(60, 100, 3), (80, 80, 3), (50, 90, 3)]]
    boxes = collect_query_boxes(predictor, images)
    assert boxes.centres.shape == (3, 6, 2) and boxes.scores.shape == (3, 6)
    predicted = predictor.predict(images[1], threshold=0.0)
    np.testing.assert_allclose(np.sort(boxes.scores[1])[::-1], predicted.scores.numpy(), rtol=1e-5)
    # Batches are zero-padded: the backbone sees the padding near the edges, so boxes move a little.
    batched = collect_query_boxes(predictor, images, batch_size=2)
    np.testing.assert_allclose(batched.centres, boxes.centres, atol=0.02)
    assert set(np.unique(boxes.size_classes)) <= {0, 1, 2}
    assert_png(plot_query_specialisation(boxes, tmp_path / "q.png"), 1, 6, 1.2)


def test_positional_encoding(tmp_path):
    maps = positional_maps(8, 12, channels=32)
    assert np.allclose(maps.y.std(axis=2), 0, atol=1e-6) and np.allclose(maps.x.std(axis=1), 0, atol=1e-6)
    assert maps.along_x.shape == (12, 16)
    np.testing.assert_allclose(maps.along_x[:, 0], np.sin(np.arange(1, 13) / 12 * 2 * np.pi), atol=1e-5)
    y_part, x_part = maps.similarity(3, 4)
    full = np.concatenate([maps.y, maps.x]).reshape(32, -1)
    np.testing.assert_allclose((y_part + x_part).ravel(), full[:, 3 * 12 + 4] @ full, rtol=1e-5, atol=1e-5)
    assert_png(plot_positional_encoding(maps, tmp_path / "pe.png"), 3, 4)


def test_learned_encoding_halves_are_told_apart():
    learned = LearnedPositionEncoding(16)
    maps = positional_maps(5, 6, learned, channels=16)
    torch.testing.assert_close(torch.from_numpy(maps.along_x), learned.col_embed.weight[:6].detach())


def test_matching(cap, tmp_path):
    truth = GroundTruth(np.array([[55.0, 15, 85, 40], [5, 5, 30, 50]]), np.array([1, 2]))
    matching = match_ground_truth(cap, truth)
    assert matching.cost.shape == (6, 2)
    assert sorted(matching.targets.tolist()) == [0, 1] and len(set(matching.queries.tolist())) == 2
    assert len(matching.unmatched) == 4
    chosen = matching.cost[matching.queries, matching.targets].sum()
    assert chosen <= matching.cost[[0, 1], [0, 1]].sum() + 1e-6
    # threshold 0: also draws the unmatched queries as "no object"
    assert_png(plot_matching(replace(cap, threshold=0.0), matching, tmp_path / "m.png"), 2, 5, 2.4)
    empty = match_ground_truth(cap, GroundTruth(np.zeros((0, 4)), np.zeros(0, dtype=np.int64)))
    assert len(empty.queries) == 0 and len(empty.unmatched) == 6
    assert_png(plot_matching(cap, empty, tmp_path / "m0.png"), 2, 5, 2.4)
