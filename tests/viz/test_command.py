"""`detr visualize` end to end on a tiny checkpoint and a tiny built-in dataset."""

import argparse
import shutil

import pytest
import torch

from detr.config import DataConfig, ExperimentConfig
from detr.data.synthetic import CLASSES, SynthConfig, write_dataset
from detr.engine.checkpoint import save_atomic
from detr.model import build_model
from detr.viz.command import add_parser
from tests.conftest import tiny_model_config

ALL_FIGURES = {"detections.png", "decoder_attention.png", "losing_queries.png", "encoder_attention.png",
               "positional_encoding.png", "query_specialisation.png", "matching.png"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("synth"), SynthConfig(train_images=4, val_images=3))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = ExperimentConfig(model=tiny_model_config(num_classes=len(CLASSES)),
                              data=DataConfig(val_scale=64, max_size=128))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_atomic({"model": build_model(config.model).state_dict(), "config": config.to_dict(),
                 "categories": {"ids": list(range(1, len(CLASSES) + 1)), "names": list(CLASSES)}}, path)
    return path


def visualize(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="detr")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["visualize", *argv])
    args.run(args)


def test_dataset_root_gives_every_figure(data, checkpoint, tmp_path, capsys):
    out = tmp_path / "gallery"
    visualize(["--checkpoint", str(checkpoint), "--dataset", str(data), "--out", str(out), "--device", "cpu"])
    assert {p.name for p in out.glob("*.png")} == ALL_FIGURES
    index = (out / "index.html").read_text()
    for name in ALL_FIGURES:
        assert f'src="{name}"' in index
    assert "Hungarian matching" in index and str(out / "index.html") in capsys.readouterr().out


def test_image_points_layer_per_head_and_annotations(data, checkpoint, tmp_path):
    out = tmp_path / "gallery"
    image = sorted((data / "val" / "images").iterdir())[1]
    visualize([str(image), "--checkpoint", str(checkpoint), "--out", str(out), "--layer", "0", "--per-head",
               "--points", "10,10", "64,64", "--annotations", str(data / "val" / "annotations.json"),
               "--threshold", "0.3"])
    assert {p.name for p in out.glob("*.png")} == ALL_FIGURES - {"query_specialisation.png"}
    assert "000001.png (128x128), model input 64x64" in (out / "index.html").read_text()


def test_clear_errors(data, checkpoint, tmp_path):
    image = str(sorted((data / "val" / "images").iterdir())[0])
    with pytest.raises(ValueError, match="layer 5 does not exist: the model has 2 encoder layers"):
        visualize([image, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "g"), "--layer", "5"])
    assert not (tmp_path / "g").exists()
    with pytest.raises(ValueError, match="give an IMAGE"):
        visualize(["--checkpoint", str(checkpoint)])
    images = tmp_path / "images"
    shutil.copytree(data / "val" / "images", images)
    shutil.copy(image, images / "unlisted.png")
    with pytest.raises(ValueError, match="has no image named unlisted.png"):
        visualize([str(images / "unlisted.png"), "--checkpoint", str(checkpoint), "--annotations",
                   str(data / "val" / "annotations.json")])
    with pytest.raises(SystemExit):
        visualize([image, "--checkpoint", str(checkpoint), "--points", "3;4"])
