"""The paper's R50 DETR (random weights: nothing is downloaded) exports and matches PyTorch."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from detr.config import ExperimentConfig
from detr.export import export_onnx
from detr.export.runtime import session_options
from detr.model import build_model
from detr.weights import LoadedWeights
from detr.weights.coco_names import numbered_categories


@pytest.mark.slow
def test_r50_exports_and_matches_pytorch(tmp_path):
    config = ExperimentConfig()  # the paper's DETR R50, as the named model detr_r50 loads it
    model = build_model(config.model).eval()
    categories = numbered_categories(config.model.num_classes)
    path = export_onnx(LoadedWeights(config, model.state_dict(), categories), tmp_path / "r50.onnx")
    images, mask = torch.randn(2, 3, 256, 352), torch.zeros(2, 256, 352, dtype=torch.bool)
    mask[1, 192:] = True
    logits, boxes = ort.InferenceSession(str(path), session_options(ort), providers=["CPUExecutionProvider"]).run(
        None, {"images": images.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        expected = model(images, mask)
    assert logits.shape == (2, 100, 92)
    np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(boxes, expected.boxes.numpy(), atol=1e-4, rtol=0)
