import math

import pytest
import torch
from torch import nn

from detr.config import preset
from detr.data.sources import find_split
from detr.engine.checkpoint import load_checkpoint
from detr.engine.ema import ModelEMA
from detr.engine.train import Trainer
from detr.weights import load_weights
from tests.conftest import tiny_model_config


def test_the_average_follows_the_ramped_decay():
    model = nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.9, warmup_steps=10)
    shadow = model.weight.detach().clone()
    for step in range(1, 6):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update(model)
        decay = 0.9 * (1 - math.exp(-step / 10))
        shadow = decay * shadow + (1 - decay) * model.weight.detach()
    torch.testing.assert_close(ema.model.weight, shadow)
    assert not ema.model.weight.requires_grad


def test_another_model_of_the_same_layout_is_averaged_from_its_own_weights():
    """The EMA lists the tensor pairs once per model: a second model is paired anew."""
    first, second = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        first.weight.fill_(1.0), second.weight.fill_(5.0)
    ema = ModelEMA(first, decay=0.5, warmup_steps=1)
    ema.update(first)
    ema.update(second)
    decay = 0.5 * (1 - math.exp(-2))
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), decay * 1.0 + (1 - decay) * 5.0))


def test_buffers_are_copied_not_averaged():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    ema = ModelEMA(model, decay=0.9, warmup_steps=1)
    model(torch.randn(2, 3, 5, 5) * 3 + 1)  # training mode: moves the running statistics
    ema.update(model)
    for (name, live), shadow in zip(model.named_buffers(), ema.model.buffers()):
        torch.testing.assert_close(shadow, live, msg=name)
    assert int(ema.model[1].num_batches_tracked) == 1


def test_a_budget_shortens_the_average_to_a_tenth_of_its_steps_and_a_resume_keeps_it():
    """600 expected steps: the average spans about 60 (decay 1 - 1/60), not RT-DETR's 2000-step ramp;
    a long budget leaves the configured decay, and the state dict carries what the budget set."""
    ema = ModelEMA(nn.Linear(2, 1), decay=0.999, warmup_steps=1000)
    ema.fit_to_budget(600)
    assert ema.decay == pytest.approx(1 - 1 / 60) and ema.warmup_steps == 60
    ema.updates = 600
    assert ema.current_decay() == pytest.approx((1 - 1 / 60) * (1 - math.exp(-10)))
    long = ModelEMA(nn.Linear(2, 1), decay=0.999, warmup_steps=1000)
    long.fit_to_budget(10**6)
    assert (long.decay, long.warmup_steps) == (0.999, 1000)
    resumed = ModelEMA(nn.Linear(2, 1), decay=0.999, warmup_steps=1000)
    resumed.load_state_dict(ema.state_dict())
    assert (resumed.decay, resumed.warmup_steps, resumed.updates) == (ema.decay, 60, 600)


def test_a_bad_decay_is_refused():
    with pytest.raises(ValueError, match="ema_decay"):
        ModelEMA(nn.Linear(1, 1), decay=1.0, warmup_steps=1)


def _fast_trainer(tiny_data, out, epochs, **train):
    config = preset("fast")
    config.model = tiny_model_config(num_classes=4, num_queries=10, queries="selected",
                                     denoising_groups=2, query_groups=2)
    config.train.batch_size, config.train.num_workers, config.train.epochs = 4, 0, epochs
    config.train.ema_warmup_steps = 2
    for key, value in train.items():
        setattr(config.train, key, value)
    return Trainer(config, find_split(tiny_data, "train"), find_split(tiny_data, "val"), out, progress=False)


def test_a_fast_variant_run_trains_saves_the_average_and_resumes_it(tiny_data, tmp_path):
    """Every variant on at once through the real Trainer: the checkpoint carries the EMA weights,
    load_weights serves them, and a resume restores them."""
    run = _fast_trainer(tiny_data, tmp_path / "a", 1)
    run.fit()
    saved = load_checkpoint(tmp_path / "a" / "last.pt")
    assert saved["ema"]["updates"] == run.step > 0
    served = load_weights(str(tmp_path / "a" / "last.pt")).state
    for name, tensor in saved["ema"]["model"].items():
        torch.testing.assert_close(served[name], tensor)
    assert any(not torch.equal(saved["ema"]["model"][n], saved["model"][n]) for n in saved["model"])
    resumed = _fast_trainer(tiny_data, tmp_path / "b", 2)
    resumed.resume(tmp_path / "a" / "last.pt")
    assert resumed.ema.updates == run.step
    for name, tensor in resumed.ema.model.state_dict().items():
        torch.testing.assert_close(tensor, saved["ema"]["model"][name])


def test_a_timed_run_fits_its_average_to_the_budget_once_it_has_an_estimate(tiny_data, tmp_path, monkeypatch):
    """The trainer hands the schedule's estimate of the budget's steps to the EMA (here after the
    first step, in a budget that holds less than one: the shortest window, 2 steps)."""
    monkeypatch.setattr("detr.engine.train.STEPS_BEFORE_ESTIMATE", 1)
    monkeypatch.setattr("detr.engine.optim.STEPS_BEFORE_ESTIMATE", 1)
    run = _fast_trainer(tiny_data, tmp_path, 1, time_budget_minutes=1e-6)
    run.fit()
    assert run.scheduler.expected_steps < 1
    saved = load_checkpoint(tmp_path / "last.pt")["ema"]
    assert (saved["decay"], saved["warmup_steps"]) == (0.5, 2)
