"""Where a dataset's splits live, and building the loaders for them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from detr.config import DataConfig
from detr.data.coco import CocoDetection, check_image_files
from detr.data.coco_records import Categories, CocoRecords, DatasetError, read_coco
from detr.data.collate import collate
from detr.data.transforms import shared_size_draw, train_transforms, val_transforms


@dataclass(frozen=True)
class Split:
    """Where a split's files are; once `validated_split` has checked them, their records too."""

    images: Path
    annotations: Path
    records: CocoRecords | None = field(default=None, compare=False, repr=False)


def validated_split(split: Split, categories: Categories | None = None,
                    categories_owner: str = "the model's") -> Split:
    """The split with its json's records, the json and the image files it lists checked
    (see `read_coco` and `check_image_files`): the one validation everything after reads."""
    if split.records is not None and categories in (None, split.records.categories):
        return split
    records = read_coco(split.annotations, categories, categories_owner)
    check_image_files(split.images, records)
    return replace(split, records=records)


def training_splits(train: Split, val: Split, categories: Categories | None = None) -> tuple[Split, Split]:
    """Both splits validated, val against train's categories, before anything is built or written.

    An empty val split is refused, not warned about: training would run its whole course
    with every evaluation scoring 0 and no best checkpoint to choose, which is never what
    a user who named a dataset meant (most often the val folder is not where it was expected).
    """
    train = validated_split(train, categories)
    if not train.records.images:
        raise DatasetError(f"{train.annotations} lists no images: there is nothing to train on")
    val = validated_split(val, train.records.categories, "the training split's")
    if not val.records.images:
        raise DatasetError(f"{val.annotations} lists no images: training could neither be evaluated nor choose "
                           "its best checkpoint; give the val split images, or name one with --val-json and "
                           "--val-images")
    return train, val


# Roboflow's COCO export names the val split "valid".
_ROBOFLOW_FOLDER = {"val": "valid"}


def split_candidates(root: str | Path, split: str) -> list[Split]:
    """Every layout `find_split` knows, in the order it tries them."""
    root = Path(root)
    roboflow = root / _ROBOFLOW_FOLDER.get(split, split)
    return [
        Split(root / split / "images", root / split / "annotations.json"),  # ours
        Split(root / f"{split}2017", root / "annotations" / f"instances_{split}2017.json"),  # COCO
        Split(roboflow, roboflow / "_annotations.coco.json"),  # Roboflow's COCO export
        Split(root / split, root / "annotations" / f"{split}.json"),
    ]


def find_split(root: str | Path, split: str) -> Split:
    """The first layout of `split_candidates` present under `root`: ours
    (root/split/images + root/split/annotations.json), COCO's (root/split2017 +
    root/annotations/instances_split2017.json), Roboflow's COCO export
    (root/split/_annotations.coco.json beside its images, val named "valid"), or
    root/annotations/split.json with the images in root/split."""
    candidates = split_candidates(root, split)
    for candidate in candidates:
        if candidate.annotations.is_file() and candidate.images.is_dir():
            return candidate
    tried = " or ".join(f"{c.annotations} with {c.images}/" for c in candidates)
    raise DatasetError(f"no '{split}' split under {root}: looked for {tried}")


def explicit_split(split: str, annotations: str | Path | None, images: str | Path | None,
                   root: str | Path | None) -> Split:
    """The split named by --SPLIT-json/--SPLIT-images when given (both are needed),
    else the one found under the dataset folder `root`."""
    if annotations is None and images is None:
        if root is None:
            raise DatasetError(f"no '{split}' split: give --data D or --{split}-json and --{split}-images")
        try:
            return find_split(root, split)
        except DatasetError as error:
            raise DatasetError(f"{error}; or name the files with --{split}-json and --{split}-images") from None
    if annotations is None or images is None:
        given, missing = ("json", "images") if images is None else ("images", "json")
        raise DatasetError(f"--{split}-{given} needs --{split}-{missing} too")
    chosen = Split(Path(images), Path(annotations))
    if not chosen.annotations.is_file():
        raise DatasetError(f"--{split}-json: no such file: {chosen.annotations}")
    if not chosen.images.is_dir():
        raise DatasetError(f"--{split}-images: no such folder: {chosen.images}")
    return chosen


def default_data_dir() -> Path:
    """Where the built-in dataset is generated when no dataset is given."""
    cache = Path(os.environ.get("DETR_CACHE", Path.home() / ".cache" / "detr"))
    return cache / "synth"


_SIZE_DRAW = 7  # tells the size draw's seed apart from the item seed of an index equal to the slot


class EpochSampler(Sampler[tuple[int, int]]):
    """A seeded shuffle per epoch that can start part-way, so resuming continues exactly.

    Yields (epoch, index, slot): the epoch travels with each index to the
    workers, which seed the item's augmentation from it. With `world` > 1,
    process `rank` takes every world-th index of the shuffle (padded by
    wrapping round to equal length), so that the processes' batches of one
    step together are the single-process batch of world x the size; `slot`,
    the item's position in its process's share, is then the same for the
    items that the processes train on side by side (None with one process).
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """This process's indices for the current epoch, from its start."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            full = torch.randperm(self.size, generator=generator).tolist()
        else:
            full = list(range(self.size))
        padded = full + full[: (-self.size) % self.world]
        return padded[self.rank::self.world][self.start:]

    def __iter__(self):
        order = self.order()
        slots = range(self.start, self.start + len(order)) if self.world > 1 else [None] * len(order)
        return iter([(self.epoch, i, slot) for i, slot in zip(order, slots)])

    def __len__(self) -> int:
        return -(-self.size // self.world) - self.start


class SeededAugmentation(torch.utils.data.Dataset):
    """Draws each item's augmentation from a seed of (run seed, epoch, index), and with a
    slot (several processes: EpochSampler) its training size from (run seed, epoch, slot), so
    that the processes' batches of a step are about the same size.

    The global RNG is untouched, so augmentation is the same with any number
    of workers and after a resume.
    """

    def __init__(self, dataset: CocoDetection, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int | None]):
        epoch, index, slot = key
        # Integers only: Python salts the hash of strings per process, and the processes must agree.
        size_seed = None if slot is None else hash((self.seed, epoch, slot, _SIZE_DRAW)) & 0x7FFF_FFFF
        with torch.random.fork_rng(devices=[]), shared_size_draw(size_seed):
            # The CPU generator alone: torch.manual_seed would also seed (and, before CUDA starts,
            # queue with a stack trace) every accelerator's, 0.8 ms an item, and fork_rng restores none.
            torch.default_generator.manual_seed(hash((self.seed, epoch, index)) & 0x7FFF_FFFF)
            return self.dataset[index]


def build_datasets(data: DataConfig, train: Split, val: Split,
                   categories: Categories | None = None) -> tuple[CocoDetection, CocoDetection]:
    train, val = training_splits(train, val, categories)
    return (CocoDetection(train.images, train.records, train_transforms(data)),
            CocoDetection(val.images, val.records, val_transforms(data)))


def eval_loader(dataset: CocoDetection, batch_size: int, num_workers: int, rank: int = 0,
                world: int = 1) -> DataLoader:
    """In order; with world > 1, process `rank` takes every world-th image (no padding,
    so that gathered detections count each image once).

    The loader draws its workers' seed from a generator of its own: drawn from the
    global RNG, it would shift the training's random stream (dropout, denoising)
    by one draw per evaluation, and a resumed run would no longer match.
    """
    return DataLoader(dataset, batch_size=batch_size, sampler=range(rank, len(dataset), world),
                      num_workers=num_workers, collate_fn=collate, persistent_workers=num_workers > 0,
                      generator=torch.Generator())
