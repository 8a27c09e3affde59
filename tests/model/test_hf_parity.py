"""Our DETR against Hugging Face's DetrForObjectDetection with the same weights."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")

from detr.config import preset  # noqa: E402
from detr.model import build_model  # noqa: E402
from detr.weights.huggingface import hf_to_ours, ours_to_hf  # noqa: E402


def _randomised_hf_model():
    config = transformers.DetrConfig(
        use_timm_backbone=True, backbone="resnet50", use_pretrained_backbone=False, num_labels=91
    )
    model = transformers.DetrForObjectDetection(config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        # HF initialises some tensors (object queries) to constants; random values
        # everywhere make every mapped tensor matter.
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if name.startswith("model.backbone") and tensor.dim() > 1:
                continue  # keep timm's conv init so activations stay finite
            noise = torch.rand(tensor.shape, generator=generator)
            if "query_position_embeddings" in name:
                tensor.normal_(generator=generator)  # nn.Embedding's own init
            elif "running_var" in name:
                tensor.copy_(0.5 + noise)
            elif "layer_norm" in name or "layernorm" in name or name.startswith("model.backbone"):
                tensor.copy_(0.5 + noise) if name.endswith("weight") else tensor.copy_(noise - 0.5)
            elif tensor.dim() > 1:
                bound = (6 / sum(tensor.shape[:2])) ** 0.5
                tensor.copy_((2 * noise - 1) * bound)
            else:
                tensor.copy_((noise - 0.5) * 0.2)
    return model


@pytest.fixture(scope="module")
def models():
    hf = _randomised_hf_model()
    config = preset("detr_r50").model
    config.backbone.pretrained = False
    ours = build_model(config).eval()
    ours.load_state_dict(hf_to_ours(hf.state_dict()), strict=True)
    return ours, hf


def _compare(ours, hf, images, mask):
    with torch.no_grad():
        a = ours(images, mask)
        pixel_mask = None if mask is None else (~mask).long()
        b = hf(pixel_values=images, pixel_mask=pixel_mask)
    # Guard against a degenerate comparison: the queries must disagree by far
    # more than the tolerance, so a wrongly mapped query or layer would show.
    assert a["pred_logits"][0].std(0).max() > 1e-3
    logits_diff = (a["pred_logits"] - b.logits).abs().max().item()
    boxes_diff = (a["pred_boxes"] - b.pred_boxes).abs().max().item()
    assert logits_diff <= 1e-4 and boxes_diff <= 1e-4, (logits_diff, boxes_diff)
    aux_hf = b.auxiliary_outputs
    if aux_hf is not None:
        torch.testing.assert_close(a["aux_outputs"][0]["pred_boxes"], aux_hf[0]["pred_boxes"], atol=1e-4, rtol=0)


def test_one_image(models):
    ours, hf = models
    _compare(ours, hf, torch.randn(1, 3, 224, 288), None)


def test_padded_batch_of_two_sizes(models):
    ours, hf = models
    images = torch.zeros(2, 3, 256, 320)
    mask = torch.ones(2, 256, 320, dtype=torch.bool)
    images[0] = torch.randn(3, 256, 320)
    mask[0] = False
    images[1, :, :192, :224] = torch.randn(3, 192, 224)
    mask[1, :192, :224] = False
    _compare(ours, hf, images, mask)


def test_weight_mapping_round_trip_is_exact(models):
    ours, hf = models
    hf_state = hf.state_dict()
    back = ours_to_hf(ours.state_dict())
    assert set(back) == set(hf_state)
    for name, tensor in back.items():
        assert torch.equal(tensor, hf_state[name]), name
