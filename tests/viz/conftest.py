import argparse
import contextlib
import io

import numpy as np
import pytest
import torch

from detr.config import DataConfig, ExperimentConfig, SynthConfig
from detr.data.coco import Categories
from detr.data.synthetic import CLASSES, write_dataset
from detr.engine.checkpoint import save_atomic
from detr.inference import Predictor
from detr.model import build_model
from detr.viz.capture import capture
from detr.viz.command import add_parser
from tests.conftest import tiny_model_config


@pytest.fixture(scope="session")
def predictor():
    """Shared (building a backbone takes a second); tests must not modify it."""
    torch.manual_seed(0)
    model = build_model(tiny_model_config())
    categories = Categories((1, 2, 3), ("circle", "square", "triangle"))
    return Predictor(model, categories, DataConfig(val_scale=64, max_size=128), "cpu")


@pytest.fixture(scope="session")
def image():
    """A 60x100 image (not a multiple of the stride once resized) with a bright square."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(40, 120, (60, 100, 3), dtype=np.uint8)
    pixels[15:40, 55:85] = (230, 60, 40)
    return pixels


@pytest.fixture(scope="session")
def cap(predictor, image):
    """Shared; tests that need another threshold use dataclasses.replace."""
    return capture(predictor, image, threshold=0.5)


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    """A tiny synthetic dataset for the `detr visualize` tests (command and browser)."""
    return write_dataset(tmp_path_factory.mktemp("synth"), SynthConfig(train_images=4, val_images=3))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """An untrained tiny model saved as `detr train` saves it."""
    torch.manual_seed(0)
    config = ExperimentConfig(model=tiny_model_config(num_classes=len(CLASSES)),
                              data=DataConfig(val_scale=64, max_size=128))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_atomic({"model": build_model(config.model).state_dict(), "config": config.to_dict(),
                 "categories": {"ids": list(range(1, len(CLASSES) + 1)), "names": list(CLASSES)}}, path)
    return path


def visualize(argv: list[str]) -> None:
    """`detr visualize ARGV`, parsed and run as the CLI does."""
    parser = argparse.ArgumentParser(prog="detr")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["visualize", *argv])
    args.run(args)


@pytest.fixture(scope="session")
def dataset_gallery(data, checkpoint, tmp_path_factory):
    """`detr visualize --dataset` run once (seconds) for the tests that read its gallery.

    Returns the gallery folder and what the command printed.
    """
    out = tmp_path_factory.mktemp("dataset_gallery") / "gallery"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        visualize(["--checkpoint", str(checkpoint), "--dataset", str(data), "--out", str(out), "--device", "cpu"])
    return out, printed.getvalue()
