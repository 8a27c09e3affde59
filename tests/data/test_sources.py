import pytest

from detr.config import DataConfig
from detr.data.coco import CocoDetection, DatasetError
from detr.data.sources import EpochSampler, Split, build_datasets, eval_loader, explicit_split, find_split, \
    training_splits
from tests.data.tiny_coco import write_tiny_coco


def test_epoch_order_is_seeded_per_epoch_and_resumable():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(i for _, i, _ in list(sampler)) == list(range(10))
    sampler.set_epoch(0, start=4)
    assert list(sampler) == first[4:] and len(sampler) == 6


def test_shards_interleave_into_the_single_process_order():
    single = EpochSampler(10, seed=3)
    shards = [EpochSampler(10, seed=3, rank=r, world=3) for r in range(3)]
    for sampler in [single, *shards]:
        sampler.set_epoch(2)
    order = [i for _, i, _ in single]
    parts = [[i for _, i, _ in s] for s in shards]
    assert [len(p) for p in parts] == [4, 4, 4]  # 10 padded to 12 by wrapping round
    interleaved = [parts[r][k] for k in range(4) for r in range(3)]
    assert interleaved == order + order[:2]


def test_the_items_trained_side_by_side_share_a_slot_and_one_process_has_none():
    """The k-th item of every process's share has slot k, also after a resume part-way; a single
    process has no slot, so its augmentation is drawn as before there were processes."""
    shards = [EpochSampler(10, seed=3, rank=r, world=2) for r in range(2)]
    for sampler in shards:
        sampler.set_epoch(1, start=2)
    assert [[slot for _, _, slot in s] for s in shards] == [[2, 3, 4], [2, 3, 4]]
    single = EpochSampler(10, seed=3)
    single.set_epoch(1)
    assert {slot for _, _, slot in single} == {None}


def test_eval_shards_cover_each_image_once():
    seen = []
    for rank in range(3):
        seen += list(eval_loader(list(range(7)), 2, 0, rank, 3).sampler)
    assert sorted(seen) == list(range(7))


def test_missing_split_names_both_layouts(tmp_path):
    with pytest.raises(DatasetError, match="val/annotations.json .*annotations/instances_val2017.json"):
        find_split(tmp_path, "val")


@pytest.mark.parametrize("layout", ["roboflow", "annotations_folder"])
def test_finds_roboflow_and_annotations_folder_layouts(tmp_path, layout):
    if layout == "roboflow":  # images and _annotations.coco.json together; val is "valid"
        expected = {s: Split(tmp_path / f, tmp_path / f / "_annotations.coco.json")
                    for s, f in [("train", "train"), ("val", "valid"), ("test", "test")]}
    else:
        expected = {s: Split(tmp_path / s, tmp_path / "annotations" / f"{s}.json") for s in ("train", "val")}
    for split, where in expected.items():
        write_tiny_coco(where.images, where.annotations)
    for split, where in expected.items():
        found = find_split(tmp_path, split)
        assert found == where
        assert len(CocoDetection(found.images, found.annotations)) == 2


def test_our_layout_wins_over_the_others(tmp_path):
    write_tiny_coco(tmp_path / "val" / "images", tmp_path / "val" / "annotations.json")
    write_tiny_coco(tmp_path / "val", tmp_path / "annotations" / "val.json")
    assert find_split(tmp_path, "val").annotations == tmp_path / "val" / "annotations.json"


def test_missing_split_lists_every_layout(tmp_path):
    (tmp_path / "valid").mkdir()  # a folder alone, no json: still no split
    with pytest.raises(DatasetError) as error:
        find_split(tmp_path, "val")
    message = str(error.value)
    assert "\n" not in message
    for where in ["val/annotations.json with", "annotations/instances_val2017.json with", "val2017/",
                  "valid/_annotations.coco.json with", "annotations/val.json with"]:
        assert where in message, where


def test_explicit_files_replace_the_dataset_folder(tmp_path):
    write_tiny_coco(tmp_path / "pics", tmp_path / "labels.json")
    assert explicit_split("train", tmp_path / "labels.json", tmp_path / "pics", None) == \
        Split(tmp_path / "pics", tmp_path / "labels.json")
    with pytest.raises(DatasetError, match="--train-json needs --train-images too"):
        explicit_split("train", tmp_path / "labels.json", None, tmp_path)
    with pytest.raises(DatasetError, match="--val-json: no such file: .*nope.json"):
        explicit_split("val", tmp_path / "nope.json", tmp_path / "pics", None)
    with pytest.raises(DatasetError, match="--val-images: no such folder"):
        explicit_split("val", tmp_path / "labels.json", tmp_path / "nope", None)
    with pytest.raises(DatasetError, match="instances_val2017.json.*; or name the files with --val-json"):
        explicit_split("val", None, None, tmp_path)
    with pytest.raises(DatasetError, match="give --data D or --val-json and --val-images"):
        explicit_split("val", None, None, None)


def test_datasets_are_built_from_the_validated_records_without_reading_the_json_again(tmp_path):
    splits = {name: Split(tmp_path / name, tmp_path / f"{name}.json") for name in ("train", "val")}
    for split in splits.values():
        write_tiny_coco(split.images, split.annotations)
    train, val = training_splits(splits["train"], splits["val"])
    for split in splits.values():
        split.annotations.unlink()  # what is built next can only come from the records
    train_set, val_set = build_datasets(DataConfig(), train, val)
    assert len(train_set) == len(val_set) == 2 and val_set.categories == train_set.categories


def test_seeded_items_repeat_and_seed_the_cpu_generator_alone(tmp_path, monkeypatch):
    """An item's augmentation comes from its (seed, epoch, index) and leaves the global RNG as
    it was. Only the CPU generator is seeded: torch.manual_seed would seed (or queue, with a
    stack trace, for a CUDA that has not started) every device's too, which cost 0.8 ms an item."""
    import torch
    from detr.data.sources import SeededAugmentation
    splits = {name: Split(tmp_path / name, tmp_path / f"{name}.json") for name in ("train", "val")}
    for split in splits.values():
        write_tiny_coco(split.images, split.annotations)
    train_set, _ = build_datasets(DataConfig(), *training_splits(splits["train"], splits["val"]))
    items = SeededAugmentation(train_set, seed=5)

    def refuse(*args):
        raise AssertionError("torch.manual_seed seeds every device")
    monkeypatch.setattr(torch, "manual_seed", refuse)
    torch.default_generator.manual_seed(11)
    expected_next = torch.rand(1, generator=torch.Generator().manual_seed(11))
    first, again = items[(0, 1, 0)], items[(0, 1, 0)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["boxes"], again[1]["boxes"])
    assert torch.equal(torch.rand(1), expected_next)
