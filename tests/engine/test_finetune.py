"""Fine-tuning from converted weights with another class count."""

import pytest
import torch

from detr.cli import main
from detr.config import preset
from detr.data.sources import find_split
from detr.engine.train import Trainer
from detr.weights import load_weights, write_weights
from tests.weights.helpers import tiny_weights


@pytest.fixture
def converted(tmp_path):
    """A 7-class tiny DETR written in the official layout (one .pth file)."""
    return write_weights(tiny_weights(num_classes=7), tmp_path / "source.pth", "official")


def test_finetuning_from_converted_weights_lowers_the_loss(converted, tiny_data, tmp_path, caplog):
    loaded = load_weights(converted)
    config = preset("small")
    config.model = loaded.config.model
    config.train.batch_size, config.train.num_workers = 4, 0
    config.train.lr = config.train.lr_backbone = 1e-4
    config.train.warmup_steps = 0
    with caplog.at_level("INFO"):
        trainer = Trainer(config, find_split(tiny_data, "train"), find_split(tiny_data, "val"), tmp_path,
                          progress=False, init=loaded.state)
    assert "class head re-initialised for 4 classes" in caplog.text
    assert trainer.model.class_embed.out_features == 5
    torch.testing.assert_close(trainer.model.queries.embed.weight, loaded.state["queries.embed.weight"])
    batch = next(iter(trainer.train_loader))
    losses = [float(trainer._train_step([batch])["loss"]) for _ in range(6)]
    assert losses[-1] < losses[0]


def test_cli_init_and_frozen_backbone(converted, tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--init", str(converted), "--freeze-backbone",
                 "--out", str(out), "--epochs", "1", "--batch-size", "4", "--workers", "0",
                 "--no-progress", "--pictures", "1"]) == 0
    source = load_weights(converted).state
    tuned = load_weights(out / "last.pt").state
    backbone = [n for n in source if n.startswith("backbone.") and source[n].is_floating_point()]
    assert backbone and all(torch.equal(tuned[n], source[n]) for n in backbone)
    assert not torch.equal(tuned["transformer.decoder_norm.weight"], source["transformer.decoder_norm.weight"])
