import math

import pytest
import torch

from detr.cli import main
from detr.crowd.nms_ceiling import nms_ceiling, surviving
from detr.crowd.overlap import histogram, max_same_class_iou, overlap_bin

# Two same-class boxes at IoU 0.6: intersection 7.5x10 = 75, union 125.
PAIR = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.5, 0.0, 12.5, 10.0]])


def test_largest_same_class_iou_ignores_other_classes():
    boxes = torch.cat([PAIR, torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])])
    labels = torch.tensor([0, 0, 1, 0])
    values = max_same_class_iou(boxes, labels)
    torch.testing.assert_close(values, torch.tensor([0.6, 0.6, 0.0, 0.0]))
    assert max_same_class_iou(PAIR[:1], torch.tensor([0])).tolist() == [0.0]


def test_bins_have_closed_lower_edges():
    assert overlap_bin(torch.tensor([0.0, 0.29, 0.3, 0.5, 0.69, 0.7, 1.0])).tolist() == [0, 0, 1, 2, 2, 3, 3]
    assert histogram([(PAIR, torch.tensor([0, 0])), (PAIR[:1], torch.tensor([2]))]) == [1, 0, 2, 0]


@pytest.mark.parametrize("threshold, kept", [(0.45, 1), (0.5, 1), (0.65, 2), (0.7, 2)])
def test_nms_on_a_pair_at_iou_point_six(threshold, kept):
    # torchvision suppresses a box whose IoU with a kept one is above the threshold.
    alive = surviving(PAIR, torch.tensor([0, 0]), threshold, torch.tensor([0.9, 0.8]))
    assert alive.sum() == kept and alive[0]


def test_ceiling_per_bin():
    images = [(PAIR, torch.tensor([0, 0])), (torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.tensor([1]))]
    low = nms_ceiling(images, 0.45, draws=4)
    assert low[0] == 1.0 and low[2] == 0.5 and math.isnan(low[1]) and math.isnan(low[3])
    assert nms_ceiling(images, 0.7, draws=4)[2] == 1.0
    # Different classes never suppress each other.
    assert nms_ceiling([(PAIR, torch.tensor([0, 1]))], 0.45, draws=3)[0] == 1.0


def test_crowd_command_prints_histogram_and_ceiling(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--crowd", "--train-images", "1", "--val-images", "20"]) == 0
    assert main(["crowd", "--data", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "[0.7,1]" in printed and "NMS@0.45" in printed and "NMS@0.7" in printed


def test_crowd_command_scores_a_model_with_and_without_nms(tmp_path, capsys):
    from detr.data.coco import Categories
    from detr.data.synthetic import CLASSES
    from detr.weights import write_weights
    from tests.weights.helpers import tiny_weights

    assert main(["synth", "--out", str(tmp_path), "--crowd", "--train-images", "1", "--val-images", "6"]) == 0
    weights = tiny_weights(Categories((1, 2, 3, 4), CLASSES), num_classes=4)
    weights.config.data.val_scale = 128
    folder = write_weights(weights, tmp_path / "model", "ours")
    assert main(["crowd", "--data", str(tmp_path), "--checkpoint", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("DETR+NMS@0.45") == 1 and "recall at match IoU 0.75" in printed
