import pytest
import torch

from detr.config import BackboneConfig, DataConfig, ExperimentConfig, ModelConfig
from detr.engine import local_processes
from detr.engine.checkpoint import save_atomic
from detr.model import build_model
from tests.skip_policy import register


def pytest_configure(config):
    register(config)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _one_training_process():
    """`detr train` runs in the test's process, as if the machine had one core: the default preset
    starts one process per core (train.processes), fresh ones without the test's monkeypatches.
    Session-wide, so that module fixtures that train see it too; tests/engine/test_local_processes.py
    gives the launcher its cores back."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local_processes, "available_cores", lambda: 1)
        yield


def tiny_model_config(**overrides) -> ModelConfig:
    """A few-thousand-parameter DETR for fast unit tests."""
    values = dict(
        num_classes=3, num_queries=6, hidden_dim=32, num_heads=4, encoder_layers=2, decoder_layers=2,
        feedforward_dim=64, dropout=0.0,
        backbone=BackboneConfig(name="resnet18", last_layer="layer3"),
    )
    values.update(overrides)
    return ModelConfig(**values)


def save_tiny_checkpoint(path, names: list[str]):
    """An untrained tiny DETR saved as `detr train` saves it, for command tests; category ids 1..K."""
    config = ExperimentConfig(model=tiny_model_config(num_classes=len(names)),
                              data=DataConfig(val_scale=32, max_size=64))
    save_atomic({"model": build_model(config.model).state_dict(), "config": config.to_dict(),
                 "categories": {"ids": list(range(1, len(names) + 1)), "names": list(names)}}, path)
    return path
