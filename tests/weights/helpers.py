"""Shared builders for the weights tests."""

import torch

from detr.config import ExperimentConfig
from detr.data.coco import Categories
from detr.model import build_model
from detr.weights.base import LoadedWeights
from tests.conftest import tiny_model_config


def randomise_(tensors) -> None:
    """Distinct random values everywhere, so a swapped or dropped tensor shows."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, tensor in tensors:
            if not tensor.is_floating_point() or (name.startswith("backbone.") and tensor.dim() > 1):
                continue  # keep the ResNet's own (random) conv init: activations stay finite
            noise = torch.rand(tensor.shape, generator=generator)
            if "running_var" in name:
                tensor.copy_(0.5 + noise)
            elif tensor.dim() == 1:
                tensor.copy_(noise + 0.5 if name.endswith("weight") else noise - 0.5)
            else:
                bound = (6 / sum(tensor.shape[:2])) ** 0.5
                tensor.copy_((2 * noise - 1) * bound)


def tiny_weights(categories: Categories | None = None, **overrides) -> LoadedWeights:
    """A tiny DETR's config, randomised weights and categories, as load_weights returns them."""
    config = ExperimentConfig(model=tiny_model_config(**overrides))
    model = build_model(config.model)
    randomise_(list(model.named_parameters()) + list(model.named_buffers()))
    k = config.model.num_classes
    categories = categories or Categories(tuple(range(3, 3 + 2 * k, 2)), tuple(f"thing {i}" for i in range(k)))
    return LoadedWeights(config, model.state_dict(), categories)


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b), set(a) ^ set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
