"""data.size_draw: which training images share one draw of the random resize's size."""

from tests.engine.test_accumulation import _first_items
from tests.engine.test_checkpoint_and_failures import _tiny_trainer

# No crop and no long-side cap: an image's short side is the size drawn for it.
NO_CROP = {"train_scales": (64, 80, 96, 112, 128), "crop_probability": 0.0, "max_size": 1000}


def _short_sides(trainer) -> list[set[int]]:
    """Per training batch of the first epoch, its images' short sides."""
    return [{int(min(t["size"])) for t in targets} for _, _, targets in _first_items(trainer, 12)]


def test_a_batch_draws_one_size_for_all_its_images_and_an_image_draws_its_own(tiny_data, tmp_path):
    per_batch = _short_sides(_tiny_trainer(tiny_data, tmp_path / "batch", {**NO_CROP, "size_draw": "batch"}))
    assert len(per_batch) == 3 and all(len(sides) == 1 for sides in per_batch)
    assert len(set.union(*per_batch)) > 1  # the batches still draw
    per_image = _short_sides(_tiny_trainer(tiny_data, tmp_path / "image", NO_CROP))
    assert any(len(sides) > 1 for sides in per_image)
