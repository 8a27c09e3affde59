"""Hugging Face folders: transformers' own files load into our DETR with the same outputs, and ours export to them."""

import pytest

from detr.config import BackboneConfig
from detr.model import build_model
from detr.weights.base import WeightsError
from detr.weights.formats import detect_layout, load_weights, write_weights
from tests.hf_reference import assert_same_outputs, randomise_hf_
from tests.weights.helpers import assert_same_state, tiny_weights

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")

LABELS = {0: "cat", 1: "dog", 2: "N/A", 3: "kite", 4: "bus"}
SMALL_TRANSFORMER = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=96, decoder_ffn_dim=96,
                         num_queries=10, encoder_attention_heads=4, decoder_attention_heads=4,
                         id2label=LABELS, label2id={v: k for k, v in LABELS.items()})


def _load_into_ours(folder):
    assert detect_layout(folder) == "hf"
    loaded = load_weights(folder)
    ours = build_model(loaded.config.model).eval()
    ours.load_state_dict(loaded.state)  # strict: every tensor mapped, none left over
    return loaded, ours


@pytest.mark.parametrize("dilation", [False, True])
def test_timm_backbone_folder_matches_transformers(tmp_path, dilation):
    config = transformers.DetrConfig(use_timm_backbone=True, backbone="resnet50", use_pretrained_backbone=False,
                                     dilation=dilation, **SMALL_TRANSFORMER)
    hf = randomise_hf_(transformers.DetrForObjectDetection(config))
    hf.save_pretrained(tmp_path)
    loaded, ours = _load_into_ours(tmp_path)
    model = loaded.config.model
    assert (model.backbone.name, model.backbone.dilation, model.num_heads) == ("resnet50", dilation, 4)
    assert loaded.categories.names == tuple(LABELS.values()) and loaded.categories.ids == (0, 1, 2, 3, 4)
    assert_same_outputs(ours, hf)


@pytest.mark.parametrize("resnet", [
    dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512]),  # resnet18
    dict(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048]),  # resnet50
])
def test_transformers_resnet_folder_matches_transformers(tmp_path, resnet):
    backbone = transformers.ResNetConfig(embedding_size=64, out_features=["stage4"], **resnet)
    config = transformers.DetrConfig(use_timm_backbone=False, backbone_config=backbone, **SMALL_TRANSFORMER)
    hf = randomise_hf_(transformers.DetrForObjectDetection(config))
    hf.save_pretrained(tmp_path)
    loaded, ours = _load_into_ours(tmp_path)
    assert loaded.config.model.backbone.name == ("resnet18" if resnet["layer_type"] == "basic" else "resnet50")
    assert_same_outputs(ours, hf)


@pytest.mark.parametrize("last_layer, encoding", [("layer3", "sine"), ("layer4", "sine"), ("layer4", "learned")])
def test_export_loads_in_transformers_and_round_trips(tmp_path, last_layer, encoding):
    weights = tiny_weights(backbone=BackboneConfig(name="resnet18", last_layer=last_layer), position_encoding=encoding)
    folder = write_weights(weights, tmp_path / "hf", "hf")
    hf, info = transformers.DetrForObjectDetection.from_pretrained(folder, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    ours = build_model(weights.config.model).eval()
    ours.load_state_dict(weights.state)
    assert_same_outputs(ours, hf.eval())

    back = load_weights(folder)
    assert_same_state(back.state, weights.state)
    assert back.config.model == weights.config.model
    assert back.categories == weights.categories

    alone = load_weights(folder / "model.safetensors")  # no config.json: the tensors tell the shape
    assert_same_state(alone.state, weights.state)
    assert alone.config.model.backbone == weights.config.model.backbone


def test_pre_norm_has_no_hugging_face_form(tmp_path):
    with pytest.raises(WeightsError, match="no pre-norm"):
        write_weights(tiny_weights(pre_norm=True), tmp_path / "hf", "hf")


def test_hub_id_goes_through_snapshot_download(tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    weights = tiny_weights(backbone=BackboneConfig(name="resnet18", last_layer="layer4"))
    folder = write_weights(weights, tmp_path / "snapshot", "hf")
    calls = []

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, tuple(allow_patterns)))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    loaded = load_weights("facebook/detr-resnet-50@no_timm")
    assert calls == [("facebook/detr-resnet-50", "no_timm", ("config.json", "model.safetensors"))]
    assert_same_state(loaded.state, weights.state)

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore detail")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(WeightsError, match="Hub did not give it: We couldn't connect") as error:
        load_weights("facebook/detr-resnet-101")
    assert "\n" not in str(error.value)
