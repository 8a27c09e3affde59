"""batches_by_size: which images share a padded batch at inference."""

import itertools
import random

from detr.data.collate import CUT_SAVING, batches_by_size


def _padded(shapes, batches):
    return sum(len(b) * max(shapes[i][0] for i in b) * max(shapes[i][1] for i in b) for b in batches)


def test_wide_and_tall_images_go_to_two_batches_and_like_sizes_stay_together():
    wide, tall = (192, 256), (256, 192)
    shapes = [wide, tall, wide, tall, wide, tall]
    batches = batches_by_size(shapes)
    assert batches == [[0, 2, 4], [1, 3, 5]]
    assert batches_by_size([wide] * 5) == [[0, 1, 2, 3, 4]]
    assert batches_by_size([wide]) == [[0]] and batches_by_size([]) == []


def test_a_cut_that_saves_less_than_its_share_of_an_image_is_not_taken():
    # Cutting the wider image off saves 3 columns of 100 rows in each of the others: 300 x 3 pixels,
    # against CUT_SAVING of the mean image (about 10000 pixels).
    shapes = [(100, 100), (100, 100), (100, 100), (100, 103)]
    assert 900 < CUT_SAVING * 10000
    assert batches_by_size(shapes) == [[0, 1, 2, 3]]
    shapes[-1] = (100, 100 + int(CUT_SAVING * 10000) // 300 + 10)  # now the cut saves enough
    assert batches_by_size(shapes) == [[0, 1, 2], [3]]


def test_random_sizes_each_image_once_never_more_padding_and_no_cut_left_worth_taking():
    rng = random.Random(0)
    for _ in range(200):
        shapes = [(rng.randint(100, 300), rng.randint(100, 300)) for _ in range(rng.randint(1, 9))]
        batches = batches_by_size(shapes)
        assert sorted(itertools.chain(*batches)) == list(range(len(shapes)))
        assert _padded(shapes, batches) <= _padded(shapes, [list(range(len(shapes)))])
        for batch in batches:  # along the aspect order, no cut of a batch saves CUT_SAVING of an image
            ordered = sorted(batch, key=lambda i: shapes[i][0] / shapes[i][1])
            image = sum(shapes[i][0] * shapes[i][1] for i in batch) / len(batch)
            for k in range(1, len(ordered)):
                saved = _padded(shapes, [ordered]) - _padded(shapes, [ordered[:k], ordered[k:]])
                assert saved < CUT_SAVING * image
