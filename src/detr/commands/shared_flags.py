"""Flags several commands share: how they are added to a parser and how their values are read."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import torch

from detr.config import TrainConfig
from detr.data.sources import Split, default_data_dir, explicit_split
from detr.data.synthetic import write_dataset
from detr.inference import Predictor
from detr.precision import PRECISIONS
from detr.predictors import load

log = logging.getLogger("detr")

_TRAIN_FIELDS = {field.name for field in dataclasses.fields(TrainConfig)}


def add_train_flag(parser: argparse.ArgumentParser, flag: str, field: str, **kwargs) -> None:
    """Add FLAG so that its value, where given, overrides TrainConfig.FIELD (see `train_overrides`):
    the flag names its field here, once, and no list elsewhere repeats it."""
    if field not in _TRAIN_FIELDS:
        raise ValueError(f"{flag} names TrainConfig.{field}, which does not exist: fix the field name")
    kwargs["dest"] = f"train.{field}"
    if kwargs.get("action") == "store_true":
        kwargs["default"] = None  # absent: the preset's value stands
    elif "choices" not in kwargs:  # the metavar the flag would have under its own name
        kwargs.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
    parser.add_argument(flag, **kwargs)


def train_overrides(args: argparse.Namespace) -> dict:
    """{TrainConfig field: value} of the flags added by `add_train_flag` that were given."""
    return {dest.removeprefix("train."): value for dest, value in vars(args).items()
            if dest.startswith("train.") and value is not None}


def add_common(parser: argparse.ArgumentParser, data_help: str = "dataset folder (default: the built-in dataset)",
               train: bool = False):
    """train: --workers sets TrainConfig.num_workers (see `add_train_flag`)."""
    parser.add_argument("--data", help=data_help)
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add = (lambda flag, **kw: add_train_flag(parser, flag, "num_workers", **kw)) if train else parser.add_argument
    add("--workers", type=int, help="data loading processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_split_files(parser: argparse.ArgumentParser, split: str, why: str = "instead of the one found under --data"):
    parser.add_argument(f"--{split}-json", help=f"the {split} split's COCO json, {why} (with --{split}-images)")
    parser.add_argument(f"--{split}-images", help=f"the folder of the {split} split's images (with --{split}-json)")


def add_speed(parser: argparse.ArgumentParser, train: bool = False):
    """train: the flags set TrainConfig.precision and .compile (see `add_train_flag`)."""
    add = (lambda flag, **kw: add_train_flag(parser, flag, flag[2:], **kw)) if train else parser.add_argument
    add("--precision", choices=PRECISIONS, help="bf16: autocast (for GPUs; default fp32)")
    add("--compile", action="store_true", help="torch.compile the model")


def add_weights(parser: argparse.ArgumentParser) -> None:
    """--checkpoint or --onnx, one of them (read by `chosen_predictor`)."""
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="a checkpoint, named model, official/HF file or folder, or hub id")
    weights.add_argument("--onnx", help="a .onnx file written by `detr export` (runs in onnxruntime on the CPU)")


def chosen_predictor(args: argparse.Namespace) -> Predictor:
    """The Predictor of --checkpoint (with --device, --precision, --compile) or of --onnx."""
    if args.onnx:
        if args.precision not in (None, "fp32") or args.compile or args.device not in (None, "cpu"):
            raise ValueError("--onnx runs in onnxruntime on the CPU in fp32: drop --precision, --compile, --device")
        return load(args.onnx)
    return Predictor.from_checkpoint(args.checkpoint, device(args.device), **predictor_options(args))


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
