"""detr.load("x.onnx"), `detr predict --onnx` and the --postprocess graph give Predictor's detections."""

import copy
import json

import numpy as np
import onnx
import pytest
import torch

import detr
from detr.cli import main
from detr.config import BackboneConfig, DataConfig
from detr.export import export_onnx
from detr.export.runtime import OnnxPredictor
from detr.inference import Predictor
from detr.weights import WeightsError, write_weights
from tests.weights.helpers import tiny_weights


@pytest.fixture(scope="module")
def weights():
    weights = tiny_weights(backbone=BackboneConfig(name="resnet18", last_layer="layer2"))
    # The default val_scale (800) would blow the 48..90-pixel images up to 800x1333, and the
    # tiny model would spend the test's CPU on them: 64 still resizes every image and pads.
    weights.config.data = DataConfig(val_scale=64, max_size=112)
    return weights


@pytest.fixture(scope="module")
def torch_predictor(weights):
    return Predictor.from_weights(weights, "cpu")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((48, 80, 3), (90, 60, 3), (64, 64, 3))]


def _assert_same_detections(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.labels.tolist() == b.labels.tolist() and a.names == b.names
        torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=0)  # pixels


def test_postprocess_graph_gives_predictors_detections(weights, torch_predictor, images, tmp_path):
    path = export_onnx(weights, tmp_path / "post.onnx", postprocess=True)
    onnx_predictor = detr.load(path)
    assert isinstance(onnx_predictor, OnnxPredictor)
    expected = torch_predictor.predict_batch(images, threshold=0.0)
    assert len(expected[0].scores) == weights.config.model.num_queries
    _assert_same_detections(onnx_predictor.predict_batch(images, threshold=0.0), expected)
    with pytest.raises(ValueError, match="exported with --postprocess"):
        onnx_predictor.forward(torch.zeros(1, 3, 32, 32), torch.zeros(1, 32, 32, dtype=torch.bool))


def test_cli_export_then_predict_onnx_matches_the_checkpoint(weights, torch_predictor, images, tmp_path):
    from PIL import Image

    folder = write_weights(weights, tmp_path / "model", "ours")
    (tmp_path / "images").mkdir()
    for i, pixels in enumerate(images):
        Image.fromarray(pixels).save(tmp_path / "images" / f"image{i}.png")
    assert main(["export", str(folder), str(tmp_path / "model.onnx")]) == 0
    for flag, source, out in (("--checkpoint", folder, "torch"), ("--onnx", tmp_path / "model.onnx", "onnx")):
        assert main(["predict", str(tmp_path / "images"), flag, str(source), "--threshold", "0.0",
                     "--out", str(tmp_path / out), "--no-progress"]) == 0
    by_torch, by_onnx = (json.loads((tmp_path / out / "detections.json").read_text()) for out in ("torch", "onnx"))
    assert [r["image"] for r in by_onnx] == [r["image"] for r in by_torch]
    for a, b in zip(by_onnx, by_torch):
        assert a["labels"] == b["labels"] and a["category_ids"] == b["category_ids"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=2e-4)  # both rounded to 4 places
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=2e-2)  # both rounded to 2 places
    # The raw graph through detr.load on a padded batch, against Predictor.
    expected = torch_predictor.predict_batch(images, threshold=0.3)
    assert sum(len(e.scores) for e in expected) > 0  # some detections pass the threshold to compare
    _assert_same_detections(detr.load(tmp_path / "model.onnx").predict_batch(images, threshold=0.3), expected)


def test_no_mask_graph_refuses_a_padded_batch(weights, torch_predictor, images, tmp_path):
    predictor = detr.load(export_onnx(weights, tmp_path / "plain.onnx", mask="none"))
    # onnxruntime takes PyTorch's thread count unless told (it ignores OMP_NUM_THREADS).
    assert predictor.session.get_session_options().intra_op_num_threads == torch.get_num_threads()
    assert detr.load(tmp_path / "plain.onnx", threads=3).session.get_session_options().intra_op_num_threads == 3
    single = torch_predictor.predict(images[0], threshold=0.0)
    _assert_same_detections([predictor.predict(images[0], threshold=0.0)], [single])
    # Wide and tall images run as two unpadded batches; two wide ones of other widths pad.
    assert len(predictor.predict_batch(images[:2], threshold=0.0)) == 2
    with pytest.raises(ValueError, match="exported with --mask none"):
        predictor.predict_batch([images[0], np.zeros((60, 90, 3), np.uint8)])


def test_onnx_files_that_are_not_detr_exports_are_refused(tmp_path):
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "other",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]),
              tmp_path / "other.onnx")
    with pytest.raises(WeightsError, match="without DETR's metadata"):
        detr.load(tmp_path / "other.onnx")
    (tmp_path / "broken.onnx").write_text("not a graph")
    with pytest.raises(WeightsError, match="cannot read .*broken.onnx as an ONNX model"):
        detr.load(tmp_path / "broken.onnx")
    with pytest.raises(WeightsError, match="no such ONNX file"):
        detr.load(tmp_path / "missing.onnx")


def test_postprocess_graph_ranks_class_pairs_as_the_predictor_does(weights, images, tmp_path):
    """model.class_pairs reads the best (query, class) pairs: the exported graph and the
    PyTorch predictor keep the same ones, more than one per query."""
    paired = copy.deepcopy(weights)
    model = paired.config.model
    model.class_pairs = model.num_queries + 3
    torch_predictor = Predictor.from_weights(paired, "cpu")
    expected = torch_predictor.predict_batch(images, threshold=0.0)
    assert len(expected[0].scores) == min(model.class_pairs, model.num_queries * model.num_classes)
    assert len(expected[0].scores) > model.num_queries
    onnx_predictor = detr.load(export_onnx(paired, tmp_path / "pairs.onnx", postprocess=True))
    _assert_same_detections(onnx_predictor.predict_batch(images, threshold=0.0), expected)
    _assert_same_detections(onnx_predictor.predict_batch(images, threshold=0.0),
                            detr.load(export_onnx(paired, tmp_path / "raw.onnx")).predict_batch(images, threshold=0.0))


def test_the_session_reads_denormals_as_zero_without_spinning_threads(weights, tmp_path):
    # Padded tokens' softmax exponentials are denormal, and the CPU is slow on them; zero is the
    # same output (the graph tests compare logits and boxes under these options). Spinning
    # threads would hold the cores that PyTorch's pre- and post-processing need between calls.
    predictor = OnnxPredictor(export_onnx(weights, tmp_path / "m.onnx"), threads=3)
    options = predictor.session.get_session_options()
    assert options.get_session_config_entry("session.set_denormal_as_zero") == "1"
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 3
