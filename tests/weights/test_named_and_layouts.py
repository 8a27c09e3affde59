"""Named models through torch.hub's download path, layout detection, clear failures."""

import hashlib
import json

import pytest
import torch

from detr.config import BackboneConfig

from detr.weights import named
from detr.weights.base import WeightsError
from detr.weights.formats import convert, detect_layout, load_weights, read_weights, write_weights
from detr.weights.named import NamedModel, resolve_named
from detr.weights.official import ours_to_official
from tests.weights.helpers import assert_same_state, tiny_weights


def _published_style_file(folder, weights, hash_prefix=None):
    """An official file without args, named like the published ones: name-<sha256 prefix>.pth."""
    staging = folder / "staging.pth"
    torch.save({"model": ours_to_official(weights.state)}, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    path = folder / f"detr-tiny-{hash_prefix or digest[:8]}.pth"
    staging.rename(path)
    return path


def test_named_model_downloads_checks_hash_and_then_works_offline(tmp_path, monkeypatch):
    weights = tiny_weights()
    served = _published_style_file(tmp_path, weights)
    monkeypatch.setitem(named.NAMED_MODELS, "detr_r50_dc5", NamedModel(served.as_uri(), dilation=True))
    cache = tmp_path / "cache"

    loaded = load_weights("detr_r50_dc5", cache_dir=cache)
    assert (cache / served.name).read_bytes() == served.read_bytes()
    assert_same_state(loaded.state, weights.state)
    assert loaded.config.model.backbone.dilation  # from the named model: the file has no args

    served.unlink()  # offline from now on: the cached file is enough
    assert resolve_named("detr_r50_dc5", cache_dir=cache, progress=False) == cache / served.name


def test_named_model_with_wrong_hash_is_refused(tmp_path):
    served = _published_style_file(tmp_path, tiny_weights(), hash_prefix="deadbeef")
    cache = tmp_path / "cache"
    with pytest.raises(WeightsError, match="does not match its expected SHA-256 prefix deadbeef"):
        resolve_named("detr_r50", cache_dir=cache, url=served.as_uri(), progress=False)
    assert not list(cache.iterdir())  # nothing half-downloaded is left behind


def test_damaged_cached_file_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "detr-r50-e632da11.pth").write_bytes(b"truncated")
    with pytest.raises(WeightsError, match="does not match its hash prefix e632da11; delete it"):
        load_weights("detr_r50", cache_dir=cache)


def test_published_urls_carry_hash_prefixes():
    assert named.NAMED_MODELS["detr_r101_dc5"].url == "https://dl.fbaipublicfiles.com/detr/detr-r101-dc5-a2e86def.pth"
    for model in named.NAMED_MODELS.values():
        assert named._HASH_IN_NAME.search(model.url.rsplit("/", 1)[1]).group(1)


def test_published_file_name_gives_dilation(tmp_path):
    path = tmp_path / "detr-r50-dc5-f0fb7ef5.pth"  # downloaded by hand, no args inside
    torch.save({"model": ours_to_official(tiny_weights().state)}, path)
    assert read_weights(path).config.model.backbone.dilation


def test_ours_round_trip_and_layouts(tmp_path):
    weights = tiny_weights()
    folder = write_weights(weights, tmp_path / "ours", "ours")
    assert detect_layout(folder) == "ours"
    for source in (folder, folder / "model.safetensors"):  # the folder, or the file alone
        back = load_weights(source)
        assert_same_state(back.state, weights.state)
        assert back.config == weights.config and back.categories == weights.categories


def test_training_checkpoint_and_bare_state_dicts(tmp_path):
    weights = tiny_weights()
    checkpoint = tmp_path / "best.pth"
    torch.save({"model": weights.state, "config": weights.config.to_dict(),
                "categories": weights.categories.to_dict(), "epoch": 3}, checkpoint)
    assert detect_layout(checkpoint) == "ours"
    assert load_weights(checkpoint).config == weights.config

    bare = tmp_path / "state.pth"
    torch.save(weights.state, bare)
    loaded = load_weights(bare)  # config from the tensors; heads need a hint, so this tiny one says 4
    assert loaded.config.model.backbone == weights.config.model.backbone
    assert loaded.config.model.num_classes == 3 and loaded.config.model.encoder_layers == 2


def test_convert_between_layouts(tmp_path):
    weights = tiny_weights()
    source = write_weights(weights, tmp_path / "ours", "ours")
    official = convert(source, tmp_path / "detr.pth", to="official")
    back = convert(official, tmp_path / "again", to="ours")
    assert_same_state(load_weights(back).state, weights.state)


def test_unknown_layouts_give_one_clear_line(tmp_path):
    stray = tmp_path / "stray.pth"
    torch.save({"optimizer": torch.ones(2)}, stray)
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    empty = tmp_path / "folder"
    empty.mkdir()
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    cases = [(stray, "matches no known weights layout"), (text, "cannot read .*notes.pth"),
             (empty, "folder without config.json"), (other, "model type 'bert', not DETR"),
             (tmp_path / "missing.pth", "no such file or folder"), ("detr_r999", "no such file or folder")]
    for source, message in cases:
        with pytest.raises(WeightsError, match=message) as error:
            load_weights(source)
        assert "\n" not in str(error.value)


def test_writers_refuse_wrong_destinations(tmp_path):
    weights = tiny_weights()
    with pytest.raises(WeightsError, match="is a folder"):
        write_weights(weights, tmp_path, "official")
    with pytest.raises(WeightsError, match="unknown layout"):
        write_weights(weights, tmp_path / "x", "onnx")


def test_a_regnet_backbone_stays_in_our_layout(tmp_path):
    weights = tiny_weights(backbone=BackboneConfig(name="regnet_x_400mf", last_layer="layer3"))
    for layout in ("hf", "official"):
        with pytest.raises(WeightsError, match="ResNet backbones only; this model's is regnet_x_400mf"):
            write_weights(weights, tmp_path / f"out-{layout}", layout)
    bare = tmp_path / "state.pth"
    torch.save(weights.state, bare)
    with pytest.raises(WeightsError, match="RegNet-backbone DETR"):
        load_weights(bare)


def test_a_narrow_resnet_stays_in_our_layout_and_its_bare_weights_load(tmp_path):
    weights = tiny_weights(backbone=BackboneConfig(name="resnet18", last_layer="layer3", width=16))
    for layout in ("hf", "official"):
        with pytest.raises(WeightsError, match="16 channels wide, not 64"):
            write_weights(weights, tmp_path / f"out-{layout}", layout)
    bare = tmp_path / "state.pth"
    torch.save(weights.state, bare)
    loaded = load_weights(bare)
    assert loaded.config.model.backbone.width == 16
    from detr.model import build_model

    model = build_model(loaded.config.model)
    model.load_state_dict(loaded.state)
