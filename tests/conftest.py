import pytest
import torch

from detr.config import BackboneConfig, ModelConfig


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_model_config(**overrides) -> ModelConfig:
    """A few-thousand-parameter DETR for fast unit tests."""
    values = dict(
        num_classes=3, num_queries=6, hidden_dim=32, num_heads=4, encoder_layers=2, decoder_layers=2,
        feedforward_dim=64, dropout=0.0,
        backbone=BackboneConfig(name="resnet18", last_layer="layer3"),
    )
    values.update(overrides)
    return ModelConfig(**values)
