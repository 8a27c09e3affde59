"""Training batches: cropped to one size without a mask, or padded with one."""

import math

from tests.engine.test_checkpoint_and_failures import _tiny_trainer

VARIED_SIZES = {"train_scales": (96, 160), "crop_resize_scales": (96, 160)}


def test_cropped_batches_reach_the_model_unpadded_and_train(tiny_data, tmp_path):
    trainer = _tiny_trainer(tiny_data, tmp_path, {"train_batch_shape": "crop", **VARIED_SIZES}, batch_size=2, epochs=1)
    seen = []
    forward = trainer.forward

    def recording(images, mask, **kwargs):
        seen.append((tuple(images.shape[-2:]), mask))
        return forward(images, mask, **kwargs)

    trainer.forward = recording
    metrics = trainer.fit()
    assert len(seen) == trainer.step == 6
    assert all(mask is None for _, mask in seen)
    assert len({shape for shape, _ in seen}) > 1  # the scales still vary
    assert math.isfinite(metrics["AP"])


def test_padded_batches_keep_their_mask(tiny_data, tmp_path):
    trainer = _tiny_trainer(tiny_data, tmp_path, VARIED_SIZES, batch_size=2)
    shapes = set()
    for images, mask, _ in trainer.train_loader:
        assert mask is not None and mask.shape == (images.shape[0], *images.shape[-2:])
        shapes.add(tuple(images.shape[-2:]))
    assert len(shapes) > 1
