import numpy as np
import pytest
import torch

from detr.config import DataConfig
from detr.data.coco import Categories
from detr.inference import Predictor
from detr.model import build_model
from detr.viz.capture import capture
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
