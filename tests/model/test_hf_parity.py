"""Our DETR against Hugging Face's DetrForObjectDetection (full R50) with the same weights."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")

from detr.config import preset  # noqa: E402
from detr.model import build_model  # noqa: E402
from detr.weights.huggingface import hf_to_ours, ours_to_hf  # noqa: E402
from tests.hf_reference import assert_same_outputs, randomise_hf_  # noqa: E402


@pytest.fixture(scope="module")
def models():
    config = transformers.DetrConfig(
        use_timm_backbone=True, backbone="resnet50", use_pretrained_backbone=False, num_labels=91
    )
    hf = randomise_hf_(transformers.DetrForObjectDetection(config))
    ours_config = preset("detr_r50").model
    ours_config.backbone.pretrained = False
    ours = build_model(ours_config).eval()
    ours.load_state_dict(hf_to_ours(hf.state_dict()), strict=True)
    return ours, hf


def test_same_outputs_one_image_and_padded_batch(models):
    ours, hf = models
    assert_same_outputs(ours, hf, single=(224, 288), padded=((256, 320), (192, 224)))


def test_weight_mapping_round_trip_is_exact(models):
    ours, hf = models
    hf_state = hf.state_dict()
    back = ours_to_hf(ours.state_dict())
    assert set(back) == set(hf_state)
    for name, tensor in back.items():
        assert torch.equal(tensor, hf_state[name]), name
