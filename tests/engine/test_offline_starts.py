"""Downloads that fail (offline, proxy, server) end the command in one line: what, from where, how to go on."""

from urllib.error import HTTPError, URLError

import pytest
import torch
from PIL import Image

from detr.cli import main
from detr.config import ExperimentConfig, apply_settings

FAILURES = [URLError("[Errno -3] Temporary failure in name resolution"),
            HTTPError("https://example.invalid", 503, "Service Unavailable", {}, None)]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache, and a network that refuses every download."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    attempts = []

    def refuse(url, *args, **kwargs):
        attempts.append(url)
        raise refuse.error

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    yield refuse, attempts, tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(previous)


@pytest.mark.parametrize("error", FAILURES, ids=["URLError", "HTTPError"])
def test_imagenet_backbone_download_failure(offline, tiny_data, tmp_path, capsys, error):
    refuse, attempts, cache = offline
    refuse.error = error
    code = main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--no-progress", "--set", "model.backbone.pretrained=True", "model.backbone.width=64",
                 "model.backbone.blocks=()", "model.backbone.stem=resnet"])
    message = capsys.readouterr().err.strip()
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert code == 1 and attempts == [url]
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"detr train: error: cannot download the ImageNet weights of resnet18 from {url} (")
    assert str(error.reason if isinstance(error, URLError) and not isinstance(error, HTTPError) else 503) in message
    assert f"put resnet18-f37072fd.pth in {cache}, or train the backbone from scratch with --set " in message
    suggested = message.split("--set ")[1].split()
    config = apply_settings(ExperimentConfig(), suggested)  # the advice is a valid setting, and it turns it off
    assert config.model.backbone.pretrained is False


def test_imagenet_weights_on_the_narrow_default_say_which_width_stem_and_blocks_have_them(offline, tiny_data, tmp_path,
                                                                                     capsys):
    _, attempts, _ = offline
    code = main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--no-progress", "--set", "model.backbone.pretrained=True"])
    message = capsys.readouterr().err.strip()
    assert code != 0 and attempts == [] and len(message.splitlines()) == 1, message
    advice = "set model.backbone.width=64 model.backbone.blocks=() model.backbone.stem=resnet for them"
    assert "ImageNet weights exist at width 64 with resnet18's own stem and blocks only: " + advice in message
    settings = advice.removeprefix("set ").removesuffix(" for them").split()
    backbone = apply_settings(ExperimentConfig(), settings).model.backbone  # the advice is valid settings
    assert backbone.width == 64 and backbone.blocks == () and backbone.stem == "resnet"


@pytest.mark.parametrize("error", FAILURES, ids=["URLError", "HTTPError"])
def test_named_weights_download_failure(offline, tmp_path, capsys, error):
    refuse, attempts, cache = offline
    refuse.error = error
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    code = main(["predict", str(image), "--checkpoint", "detr_r50", "--out", str(tmp_path / "out"),
                 "--no-progress"])
    message = capsys.readouterr().err.strip()
    url = "https://dl.fbaipublicfiles.com/detr/detr-r50-e632da11.pth"
    assert code == 1 and attempts == [url]
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"detr predict: error: cannot download detr_r50 from {url} (")
    assert message.endswith(f"to work offline, put detr-r50-e632da11.pth in {cache}")
    assert not list(cache.iterdir())  # nothing half-written left to be mistaken for the file
