import pytest

from detr.engine.checkpoint import load_checkpoint
from detr.engine.train import LearningRateSchedule
from tests.engine.test_checkpoint_and_failures import _tiny_trainer


def test_warm_up_then_drop():
    schedule = LearningRateSchedule(warmup=4, drop_step=6)
    assert [schedule(s) for s in range(8)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 0.1, 0.1])
    assert LearningRateSchedule(warmup=0, drop_step=None)(10**6) == 1.0


def test_epoch_drop_is_fixed_up_front(tiny_data, tmp_path):
    trainer = _tiny_trainer(tiny_data, tmp_path, lr_drop_epoch=1)
    assert trainer.scheduler.lr_lambdas[0].drop_step == trainer.steps_per_epoch


def test_a_time_budget_drops_the_lr_by_the_clock_and_a_resume_keeps_the_step(tiny_data, tmp_path):
    # A zero share of the budget: the clock passes it after the first step.
    trainer = _tiny_trainer(tiny_data, tmp_path, epochs=1, time_budget_minutes=10.0, lr_drop_fraction=0.0,
                            warmup_steps=0)
    assert trainer.scheduler.lr_lambdas[0].drop_step is None
    trainer.fit()
    assert trainer.scheduler.lr_lambdas[0].drop_step == 1
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * trainer.config.train.lr)
    saved = load_checkpoint(tmp_path / "last.pt")["scheduler"]
    resumed = _tiny_trainer(tiny_data, tmp_path / "again", epochs=2, time_budget_minutes=10.0,
                            lr_drop_fraction=0.9, warmup_steps=0)
    resumed.scheduler.load_state_dict(saved)
    assert resumed.scheduler.lr_lambdas[0].drop_step == 1
