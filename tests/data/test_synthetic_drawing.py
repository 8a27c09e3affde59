import numpy as np
import pytest
from PIL import Image

from detr.data.synthetic_drawing import SHAPES, background, composite_shape


@pytest.mark.parametrize("kind", SHAPES)
def test_each_shape_touches_all_four_sides_of_its_box(kind):
    box = (10.3, 7.8, 41.0, 29.5)
    canvas = composite_shape(Image.new("RGBA", (64, 48), (0, 0, 0, 0)), kind, box, (200, 0, 0, 255), None)
    ys, xs = np.nonzero(np.asarray(canvas)[..., 3])
    x, y, w, h = box
    # Rasterising rounds to whole pixels: the painted extent is the box to within a pixel.
    assert abs(xs.min() - x) <= 1 and abs(xs.max() + 1 - (x + w)) <= 1.5
    assert abs(ys.min() - y) <= 1 and abs(ys.max() + 1 - (y + h)) <= 1.5


def test_background_has_the_requested_shape_and_a_texture():
    rng = np.random.default_rng(3)
    assert background(rng, 200, 170).shape == (170, 200, 3)
    a = background(np.random.default_rng(4), 96, 96)
    assert a.min() >= 0 and a.max() <= 255 and a.std() > 5  # textured, not flat
