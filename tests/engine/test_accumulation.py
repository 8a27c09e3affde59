import pytest
import torch

from tests.engine.test_checkpoint_and_failures import _tiny_trainer
from tests.test_precision import model_forwards_seen


def _gradients_of_first_step(trainer, micro_batches):
    """Run one optimiser step, keeping the (clipped) gradients it applies."""
    captured = []

    def keep():
        captured.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})

    trainer.optimizer.step = keep
    losses = trainer._train_step(micro_batches)
    return captured[0], losses


def _first_items(trainer, count):
    trainer.sampler.set_epoch(0)
    batches = []
    for batch in trainer.train_loader:
        batches.append(batch)
        if sum(len(b[2]) for b in batches) >= count:
            return batches
    raise AssertionError("not enough data")


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_two_micro_batches_of_two_equal_one_batch_of_four(tiny_data, tmp_path):
    # Frozen BatchNorm (the tiny model's default), no dropout, and every image kept at
    # 128x128 (padding changes backbone features near the border): batch composition
    # cannot change the outputs, so the gradients must agree.
    same_size = {"train_scales": (128,), "crop_resize_scales": (128,), "crop_min": 128, "crop_max": 128}
    whole = _tiny_trainer(tiny_data, tmp_path / "whole", same_size, batch_size=4)
    split = _tiny_trainer(tiny_data, tmp_path / "split", same_size, batch_size=2, accumulate_steps=2)
    for a, b in zip(whole.model.parameters(), split.model.parameters()):
        assert torch.equal(a, b)
    one = _first_items(whole, 4)
    two = _first_items(split, 4)
    assert len(one) == 1 and len(two) == 2
    assert [int(t["image_id"]) for t in one[0][2]] == [int(t["image_id"]) for b in two for t in b[2]]
    grads_whole, losses_whole = _gradients_of_first_step(whole, one)
    grads_split, losses_split = _gradients_of_first_step(split, two)
    assert grads_whole.keys() == grads_split.keys() and len(grads_whole) > 10
    for name, grad in grads_whole.items():
        assert torch.allclose(grad, grads_split[name], atol=1e-6, rtol=1e-4), name
    assert float(losses_whole["loss"]) == pytest.approx(float(losses_split["loss"]), rel=1e-5)
    assert split.steps_per_epoch == whole.steps_per_epoch == whole.batches_per_epoch


def test_accumulating_run_counts_optimiser_steps(tiny_data, tmp_path):
    trainer = _tiny_trainer(tiny_data, tmp_path, batch_size=2, accumulate_steps=2, epochs=1)
    trainer.fit()
    assert trainer.batches_per_epoch == 6 and trainer.steps_per_epoch == 3 and trainer.step == 3
    assert trainer.epoch == 1 and trainer.batches_done == 0


def test_bf16_autocast_trains_with_fp32_losses(tiny_data, tmp_path):
    """train.precision=bf16 runs the model's forward under bf16 autocast; its weights, their
    gradients and the losses stay fp32."""
    trainer = _tiny_trainer(tiny_data, tmp_path, precision="bf16", epochs=1)
    with model_forwards_seen() as seen:
        losses = trainer._train_step(_first_items(trainer, 4))
        reference = _tiny_trainer(tiny_data, tmp_path / "fp32", epochs=1)._train_step(_first_items(trainer, 4))
    assert [s["autocast"] for s in seen] == [torch.bfloat16, None]
    assert all(p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
               for p in trainer.model.parameters())
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    assert float(losses["loss"]) == pytest.approx(float(reference["loss"]), rel=0.05)
    assert float(losses["loss"]) != float(reference["loss"])  # autocast really ran in bf16
