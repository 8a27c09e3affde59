import pytest

from detr.data.coco import DatasetError
from detr.data.sources import EpochSampler, eval_loader, find_split


def test_epoch_order_is_seeded_per_epoch_and_resumable():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(i for _, i in list(sampler)) == list(range(10))
    sampler.set_epoch(0, start=4)
    assert list(sampler) == first[4:] and len(sampler) == 6


def test_shards_interleave_into_the_single_process_order():
    single = EpochSampler(10, seed=3)
    shards = [EpochSampler(10, seed=3, rank=r, world=3) for r in range(3)]
    for sampler in [single, *shards]:
        sampler.set_epoch(2)
    order = [i for _, i in single]
    parts = [[i for _, i in s] for s in shards]
    assert [len(p) for p in parts] == [4, 4, 4]  # 10 padded to 12 by wrapping round
    interleaved = [parts[r][k] for k in range(4) for r in range(3)]
    assert interleaved == order + order[:2]


def test_eval_shards_cover_each_image_once():
    seen = []
    for rank in range(3):
        seen += list(eval_loader(list(range(7)), 2, 0, rank, 3).sampler)
    assert sorted(seen) == list(range(7))


def test_missing_split_names_both_layouts(tmp_path):
    with pytest.raises(DatasetError, match="val/annotations.json .*annotations/instances_val2017.json"):
        find_split(tmp_path, "val")
