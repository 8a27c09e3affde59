"""The official DETR layout: names, round trips, safe loading of its pickled args."""

import argparse
import os
import pickle

import pytest
import torch

from detr.config import BackboneConfig
from detr.model import build_model
from detr.weights.base import WeightsError
from detr.weights.coco_names import COCO_NAMES, coco_categories
from detr.weights.formats import detect_layout, load_weights, read_weights, write_weights
from detr.weights.huggingface import ours_to_hf
from detr.weights.official import ours_to_official
from tests.weights.helpers import assert_same_state, tiny_weights


@pytest.mark.parametrize("variant", [{}, {"pre_norm": True, "position_encoding": "learned"}])
def test_round_trip_is_bit_identical(tmp_path, variant):
    weights = tiny_weights(**variant)
    path = write_weights(weights, tmp_path / "detr.pth", "official")
    assert detect_layout(path) == "official"
    back = read_weights(path)
    assert_same_state(back.state, weights.state)
    assert back.config.model == weights.config.model
    assert back.config.loss == weights.config.loss
    assert back.categories == weights.categories


def test_names_follow_the_reference():
    state = tiny_weights(pre_norm=True, position_encoding="learned").state
    official = ours_to_official(state)
    for name in ["backbone.0.body.layer1.0.conv1.weight", "backbone.0.body.bn1.running_mean",
                 "backbone.1.row_embed.weight", "backbone.1.col_embed.weight",
                 "transformer.encoder.layers.0.self_attn.in_proj_weight",
                 "transformer.encoder.layers.1.self_attn.out_proj.weight",
                 "transformer.encoder.layers.0.linear1.weight", "transformer.encoder.layers.0.linear2.bias",
                 "transformer.encoder.layers.0.norm1.weight", "transformer.encoder.layers.0.norm2.bias",
                 "transformer.decoder.layers.1.multihead_attn.in_proj_bias",
                 "transformer.decoder.layers.0.norm3.weight", "transformer.encoder.norm.weight",
                 "transformer.decoder.norm.weight", "class_embed.weight", "bbox_embed.layers.2.bias",
                 "query_embed.weight", "input_proj.weight"]:
        assert name in official, name
    assert official["transformer.encoder.layers.0.norm1.weight"] is \
        state["transformer.encoder_layers.0.attn_block.norm.weight"]
    assert official["transformer.decoder.layers.0.norm2.weight"] is \
        state["transformer.decoder_layers.0.cross_block.norm.weight"]


def test_agrees_with_the_hugging_face_conversion_table():
    # transformers converted the official checkpoints with these correspondences.
    state = tiny_weights().state
    official, hf = ours_to_official(state), ours_to_hf(state)
    pairs = {
        "transformer.encoder.layers.0.norm1.weight": "model.encoder.layers.0.self_attn_layer_norm.weight",
        "transformer.encoder.layers.0.norm2.weight": "model.encoder.layers.0.final_layer_norm.weight",
        "transformer.encoder.layers.0.linear1.weight": "model.encoder.layers.0.mlp.fc1.weight",
        "transformer.decoder.layers.1.norm1.bias": "model.decoder.layers.1.self_attn_layer_norm.bias",
        "transformer.decoder.layers.1.norm2.bias": "model.decoder.layers.1.encoder_attn_layer_norm.bias",
        "transformer.decoder.layers.1.norm3.bias": "model.decoder.layers.1.final_layer_norm.bias",
        "transformer.decoder.layers.1.multihead_attn.out_proj.weight":
            "model.decoder.layers.1.encoder_attn.o_proj.weight",
        "transformer.decoder.norm.weight": "model.decoder.layernorm.weight",
        "backbone.0.body.layer3.0.downsample.1.running_var":
            "model.backbone.model.layer3.0.downsample.1.running_var",
    }
    for official_name, hf_name in pairs.items():
        assert torch.equal(official[official_name], hf[hf_name]), official_name
    q, k, v = official["transformer.decoder.layers.0.multihead_attn.in_proj_weight"].chunk(3)
    assert torch.equal(k, hf["model.decoder.layers.0.encoder_attn.k_proj.weight"])


def _official_payload(weights, **args):
    namespace = argparse.Namespace(lr=1e-4, backbone="resnet18", device="cuda", output_dir="", frozen_weights=None,
                                   **args)
    return {"model": ours_to_official(weights.state), "args": namespace,
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "epoch": 299}


@pytest.mark.parametrize("zip_format", [True, False])  # the 2020 release predates torch's zip format
def test_official_file_with_args_namespace_loads(tmp_path, zip_format):
    weights = tiny_weights()
    path = tmp_path / "checkpoint.pth"
    torch.save(_official_payload(weights, nheads=4, dilation=False, dropout=0.0, aux_loss=True), path,
               _use_new_zipfile_serialization=zip_format)
    loaded = load_weights(path)
    assert loaded.config.model == weights.config.model
    model = build_model(loaded.config.model)
    model.load_state_dict(loaded.state)
    assert loaded.categories.names == ("class_0", "class_1", "class_2")


def test_coco_model_gets_official_names(tmp_path):
    weights = tiny_weights(num_classes=91)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": ours_to_official(weights.state)}, path)  # no args at all: paper defaults
    loaded = load_weights(path)
    assert loaded.config.model.num_heads == 8 and loaded.config.model.num_classes == 91
    assert loaded.categories == coco_categories()
    assert loaded.categories.names[1] == "person" and loaded.categories.names[90] == "toothbrush"


def test_coco_table():
    categories = coco_categories()
    assert len(categories.ids) == 91 and len(COCO_NAMES) == 80
    gaps = [i for i, name in zip(categories.ids, categories.names) if name == "N/A"]
    assert gaps == [0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83]


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_pickle_that_runs_code_is_refused(tmp_path):
    # The payload is live: plain unpickling really does create the marker.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_RunsCode(control)))
    assert control.exists()

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": ours_to_official(tiny_weights().state), "args": _RunsCode(marker)}, path)
    with pytest.raises(WeightsError, match="refusing to load .*could run code"):
        load_weights(path)
    with pytest.raises(WeightsError, match="refusing to load"):
        detect_layout(path)
    assert not marker.exists()


def test_dilation_is_not_in_the_weights_but_in_args(tmp_path):
    backbone = BackboneConfig(name="resnet50", dilation=False)
    weights = tiny_weights(backbone=backbone)
    path = tmp_path / "checkpoint.pth"
    torch.save(_official_payload(weights, nheads=4, dilation=True), path)
    model = load_weights(path).config.model
    assert model.backbone.name == "resnet50" and model.backbone.dilation
    assert model.backbone.last_layer == "layer4"


def test_panoptic_checkpoint_is_refused(tmp_path):
    path = tmp_path / "panoptic.pth"
    torch.save({"model": {"detr.backbone.0.body.conv1.weight": torch.zeros(1),
                          "bbox_attention.q_linear.weight": torch.zeros(1)}}, path)
    with pytest.raises(WeightsError, match="panoptic"):
        load_weights(path)
