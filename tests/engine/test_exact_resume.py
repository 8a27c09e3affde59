"""`detr train --resume` continues where the run stopped, mid-epoch too, to the same weights."""

import pytest
import torch

from detr.cli import main
from detr.engine.checkpoint import load_checkpoint
from detr.engine.train import Trainer

# A small model on the built-in data: 12 train images in batches of 4 make 3 steps an epoch.
# Dropout makes the weights depend on the random stream, so a resume that loses it shows.
TINY = ["--batch-size", "4", "--no-progress", "--eval-every", "1", "--pictures", "0", "--set",
        "model.dropout=0.1", "model.hidden_dim=32", "model.num_heads=4", "model.feedforward_dim=64",
        "model.encoder_layers=1", "model.decoder_layers=1", "data.train_scales=(64,)",
        "data.crop_resize_scales=(64,)", "data.crop_min=48", "data.crop_max=64", "data.val_scale=64",
        "data.max_size=96", "train.lr_drop_fraction=2.0"]  # no clock-driven lr drop before the stop


@pytest.fixture
def trained_steps(monkeypatch):
    """The optimiser steps each Trainer of this test trains, numbered as the run counts them."""
    steps = []
    original = Trainer._train_step

    def counting(self, micro_batches):
        steps.append(self.step + 1)
        return original(self, micro_batches)

    monkeypatch.setattr(Trainer, "_train_step", counting)
    # The clock reads one minute per step taken (it is read inside the step, before the step count
    # counts it), so a budget ends the run at a known step.
    monkeypatch.setattr(Trainer, "_minutes_since", lambda self, started: float(self.step + 1))
    return steps


@pytest.fixture(scope="module")
def straight(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--epochs", "2", "--workers", "0",
                 *TINY]) == 0
    return load_checkpoint(out / "last.pt")


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_run_stopped_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(straight, tiny_data, tmp_path,
                                                                                trained_steps, workers):
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), "--out", str(out), "--epochs", "2", "--workers", workers]
    # The budget of 1.5 "minutes" runs out after step 2: the middle of the first epoch.
    assert main([*args, "--minutes", "1.5", *TINY]) == 0
    stopped = load_checkpoint(out / "last.pt")
    assert (stopped["epoch"], stopped["batches_done"], stopped["step"]) == (0, 2, 2)
    assert trained_steps == [1, 2]

    trained_steps.clear()
    assert main([*args, "--resume", str(out / "last.pt"), *TINY]) == 0
    assert trained_steps == [3, 4, 5, 6]  # from the step after the checkpoint, not from scratch
    resumed = load_checkpoint(out / "last.pt")
    assert (resumed["epoch"], resumed["step"]) == (2, straight["step"]) == (2, 6)
    assert resumed["model"].keys() == straight["model"].keys()
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    for moments, expected in zip(resumed["optimizer"]["state"].values(), straight["optimizer"]["state"].values()):
        assert torch.equal(moments["exp_avg"], expected["exp_avg"])
