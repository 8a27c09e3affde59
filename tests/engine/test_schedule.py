import pytest
import torch

from detr.config import TrainConfig
from detr.engine.checkpoint import load_checkpoint
from detr.engine.optim import STEPS_BEFORE_ESTIMATE, WARMUP_SHARE_OF_BUDGET, LearningRateSchedule, Schedule
from tests.engine.test_checkpoint_and_failures import _tiny_trainer


def _schedule(**train) -> Schedule:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return Schedule(optimizer, TrainConfig(**train), steps_per_epoch=10)


def test_warm_up_then_drop():
    schedule = LearningRateSchedule(warmup=4, drop_step=6)
    assert [schedule(s) for s in range(8)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 0.1, 0.1])
    assert LearningRateSchedule(warmup=0, drop_step=None)(10**6) == 1.0


def test_epoch_drop_is_fixed_up_front(tiny_data, tmp_path):
    trainer = _tiny_trainer(tiny_data, tmp_path, lr_drop_epoch=1)
    assert trainer.scheduler.rule.drop_step == trainer.steps_per_epoch


def test_a_budget_alone_drops_by_the_clock_only():
    """--minutes without --epochs: no epoch-based drop; the drop lands at the share of the budget."""
    schedule = _schedule(epochs=None, time_budget_minutes=10.0, lr_drop_fraction=0.5, warmup_steps=0)
    assert schedule.rule.drop_step is None
    for step, minutes in enumerate([1.0, 2.0, 4.9, 5.1, 6.0], start=1):
        schedule.after_step(step, minutes)
    assert schedule.rule.drop_step == 4
    assert schedule.scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_with_epochs_and_budget_the_earlier_drop_wins():
    """Both given: the epoch drop is set up front, and the clock brings it forward if it passes first."""
    schedule = _schedule(epochs=5, lr_drop_epoch=4, time_budget_minutes=10.0, lr_drop_fraction=0.1, warmup_steps=0)
    assert schedule.rule.drop_step == 40
    schedule.after_step(1, 0.5)
    assert schedule.rule.drop_step == 40
    schedule.after_step(2, 1.5)
    assert schedule.rule.drop_step == 2
    late = _schedule(epochs=5, lr_drop_epoch=1, time_budget_minutes=10.0, lr_drop_fraction=0.9, warmup_steps=0)
    for step in range(1, 12):
        late.after_step(step, step * 0.1)
    assert late.rule.drop_step == 10  # the epoch came first; the clock never moved it


def test_the_warm_up_is_cut_to_a_share_of_the_budget():
    """A 1-minute budget at 0.01 min a step holds ~100 steps: a 300-step warm-up becomes 5 of them."""
    schedule = _schedule(epochs=None, time_budget_minutes=1.0, warmup_steps=300)
    for step in range(1, STEPS_BEFORE_ESTIMATE + 1):
        schedule.after_step(step, 0.01 * step)
    assert schedule.rule.warmup == STEPS_BEFORE_ESTIMATE  # never shorter than the steps already taken
    long = _schedule(epochs=None, time_budget_minutes=100.0, warmup_steps=300)
    for step in range(1, STEPS_BEFORE_ESTIMATE + 1):
        long.after_step(step, 0.01 * step)
    assert long.rule.warmup == 300  # 10000 expected steps: 5% is 500, so the configured 300 stays
    assert long.expected_steps == pytest.approx(10000)  # what the EMA's window is cut to a share of


def test_a_cut_warm_up_then_the_clock_drop_give_the_lr_of_each_phase():
    """A 10-minute budget at 0.01 minutes a step holds 1000 steps: the configured 300-step warm-up
    runs until the estimate, is then cut to its share of the budget and ends there; the lr holds
    until half the time has passed, then drops x0.1. The lr after step s is the one step s + 1 uses."""
    configured, minutes_per_step, budget, fraction = 300, 0.01, 10.0, 0.5
    schedule = _schedule(epochs=None, time_budget_minutes=budget, warmup_steps=configured,
                         lr_drop_fraction=fraction)
    lrs = {}
    optimizer = schedule.scheduler.optimizer
    for step in range(1, 701):
        optimizer.step()  # as in training: the optimiser steps, then the schedule
        schedule.after_step(step, step * minutes_per_step)
        lrs[step] = optimizer.param_groups[0]["lr"]
    cut = round(WARMUP_SHARE_OF_BUDGET * budget / minutes_per_step)
    assert STEPS_BEFORE_ESTIMATE < cut < configured  # so that each phase below is there to see
    for step in range(1, STEPS_BEFORE_ESTIMATE):  # not yet estimated: the configured warm-up's ramp
        assert lrs[step] == pytest.approx((step + 1) / configured), step
    for step in range(STEPS_BEFORE_ESTIMATE, cut):  # the cut warm-up's ramp, from where it stands
        assert lrs[step] == pytest.approx((step + 1) / cut), step
    drop = round(fraction * budget / minutes_per_step) + 1  # the first step past half the time
    for step in range(cut, drop):
        assert lrs[step] == pytest.approx(1.0), step
    for step in range(drop, 701):
        assert lrs[step] == pytest.approx(0.1), step
    assert (schedule.rule.warmup, schedule.rule.drop_step) == (cut, drop)  # kept for a resume


def test_the_start_line_says_what_ends_the_run():
    assert "10 minutes;" in _schedule(epochs=None, time_budget_minutes=10.0).describe(10)
    both = _schedule(epochs=3, time_budget_minutes=10.0).describe(10)
    assert "10 minutes or 3 epochs, whichever ends first" in both
    assert "3 epochs of 10 steps" in _schedule(epochs=3).describe(10)


def test_a_time_budget_drops_the_lr_by_the_clock_and_a_resume_keeps_the_step(tiny_data, tmp_path):
    # A zero share of the budget: the clock passes it after the first step.
    trainer = _tiny_trainer(tiny_data, tmp_path, epochs=1, lr_drop_epoch=100, time_budget_minutes=10.0,
                            lr_drop_fraction=0.0, warmup_steps=0)
    trainer.fit()
    assert trainer.scheduler.rule.drop_step == 1
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * trainer.config.train.lr)
    saved = load_checkpoint(tmp_path / "last.pt")["scheduler"]
    resumed = _tiny_trainer(tiny_data, tmp_path / "again", epochs=2, lr_drop_epoch=100, time_budget_minutes=10.0,
                            lr_drop_fraction=0.9, warmup_steps=0)
    resumed.scheduler.load_state_dict(saved)
    assert resumed.scheduler.rule.drop_step == 1
