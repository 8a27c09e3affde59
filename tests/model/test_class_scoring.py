"""The class-scoring rule is one object: the paper's softmax by hand, and every reader (matcher,
criterion, query selection, post-processing, the exported graph, the predictor) takes the
model's, so that a new rule changes what all of them compute."""

from dataclasses import dataclass

import pytest
import torch

from detr.config import DataConfig, LossConfig
from detr.data.coco import Categories
from detr.export.graph import InferenceGraph
from detr.inference import Predictor
from detr.loss import SetCriterion
from detr.model import build_model
from detr.model.class_scoring import ClassScoring
from detr.model.outputs import Predictions
from detr.postprocess import PostProcess
from tests.conftest import tiny_model_config


def test_probabilities_are_the_softmax_over_classes_and_no_object_without_no_object():
    logits = torch.randn(2, 5, 4, dtype=torch.float64)
    exp = logits.exp()
    expected = (exp / exp.sum(-1, keepdim=True))[..., :3]
    torch.testing.assert_close(ClassScoring().probabilities(logits), expected.float())
    scores, labels = ClassScoring().best(logits)
    for b in range(2):
        for q in range(5):
            row = [float(v) for v in expected[b, q]]
            assert labels[b, q] == row.index(max(row))
            assert scores[b, q] == pytest.approx(max(row), rel=1e-6)


def test_predicts_object_where_a_real_class_beats_no_object():
    logits = torch.tensor([[[3.0, 0.0, 1.0], [0.0, 1.0, 2.0], [0.0, 2.0, 2.0 - 1e-3]]])
    assert ClassScoring().predicts_object(logits).tolist() == [[True, False, True]]
    assert ClassScoring().no_object(logits) == 2


def test_negative_pairs_are_refused():
    with pytest.raises(ValueError, match="class pairs"):
        ClassScoring(-1)


@dataclass(frozen=True)
class SquaredScoring(ClassScoring):
    """A different rule, recognisable in every reader's numbers."""

    def probabilities(self, logits):
        return super().probabilities(logits) ** 2


def _model_with(scoring, **overrides):
    model = build_model(tiny_model_config(**overrides)).eval()
    model.scoring = scoring
    if model.query_selection is not None:
        model.query_selection.scoring = scoring
    return model


def test_the_model_hands_its_rule_to_what_reads_it():
    model = build_model(tiny_model_config(queries="selected", class_pairs=4))
    assert model.scoring == ClassScoring(4) and model.query_selection.scoring is model.scoring
    predictor = Predictor(model, Categories([1, 2, 3], ["a", "b", "c"]), DataConfig(val_scale=64, max_size=64), "cpu")
    assert predictor.scoring is model.scoring
    criterion = SetCriterion(3, LossConfig(), scoring=model.scoring)
    assert criterion.matcher.scoring is model.scoring


def test_a_new_rule_changes_matcher_postprocess_and_export_alike():
    scoring = SquaredScoring()
    model = _model_with(scoring)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(images)
    sizes = torch.tensor([[64, 64]])
    squared = ClassScoring().probabilities(out.logits) ** 2

    detections = PostProcess(scoring=scoring)(Predictions(out.logits, out.boxes), sizes)[0]
    torch.testing.assert_close(detections["scores"], squared.amax(-1)[0].sort(descending=True).values)

    criterion = SetCriterion(3, LossConfig(cost_bbox=0.0, cost_giou=0.0), scoring=scoring)
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    cost = criterion.matcher.cost_matrices(Predictions(out.logits, out.boxes), targets)[0]
    torch.testing.assert_close(cost[:, 0], -squared[0, :, 1])

    with torch.no_grad():
        scores, labels, _ = InferenceGraph(model, with_mask=False, postprocess=True)(images, sizes)
    torch.testing.assert_close(scores[0], squared.amax(-1)[0])
