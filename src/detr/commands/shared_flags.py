"""Flags several commands share: how they are added to a parser and how their values are read."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from detr.data.sources import Split, default_data_dir, explicit_split
from detr.data.synthetic import write_dataset
from detr.precision import PRECISIONS

log = logging.getLogger("detr")


def add_common(parser: argparse.ArgumentParser, data_help: str = "dataset folder (default: the built-in dataset)"):
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--workers", type=int, help="data loading processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_split_files(parser: argparse.ArgumentParser, split: str, why: str = "instead of the one found under --data"):
    parser.add_argument(f"--{split}-json", help=f"the {split} split's COCO json, {why} (with --{split}-images)")
    parser.add_argument(f"--{split}-images", help=f"the folder of the {split} split's images (with --{split}-json)")


def add_speed(parser: argparse.ArgumentParser):
    parser.add_argument("--precision", choices=PRECISIONS, help="bf16: autocast (for GPUs; default fp32)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")


def device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def data_root(path: str | None) -> Path:
    if path:
        return Path(path)
    root = default_data_dir()
    log.info("no --data given: using the built-in dataset in %s", root)
    return write_dataset(root)


def given_split(args: argparse.Namespace, split: str) -> Split | None:
    """The split named by --SPLIT-json/--SPLIT-images, or None when neither is given."""
    annotations, images = getattr(args, f"{split}_json"), getattr(args, f"{split}_images")
    return None if annotations is None and images is None else explicit_split(split, annotations, images, None)


def train_val_splits(args: argparse.Namespace) -> tuple[Split, Split]:
    """--train-json/--val-json ... where given, else the splits of --data (or the built-in dataset)."""
    given = {split: given_split(args, split) for split in ("train", "val")}
    if all(given.values()):
        return given["train"], given["val"]
    root = data_root(args.data) if args.data or not any(given.values()) else None
    return tuple(given[s] or explicit_split(s, None, None, root) for s in ("train", "val"))


def predictor_options(args: argparse.Namespace) -> dict:
    """--precision / --compile where given; the Predictor's defaults otherwise."""
    options = {"precision": args.precision, "compile": args.compile or None}
    return {name: value for name, value in options.items() if value is not None}
