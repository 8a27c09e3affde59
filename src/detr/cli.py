"""The `detr` command: train | eval | predict | synth | convert | export | visualize | crowd | benchmark."""

from __future__ import annotations

import argparse
import logging
import sys

from detr.bench import command as benchmark
from detr.commands import convert, evaluate, export, predict, synth, train
from detr.crowd import command as crowd
from detr.data.coco import DatasetError
from detr.engine.checkpoint import CheckpointError
from detr.engine.train import TrainingError
from detr.viz import command as visualize

# In the order `detr --help` lists them; each module adds its parser and the `run` it calls.
COMMANDS = (train, evaluate, predict, synth, convert, export, visualize, crowd, benchmark)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (DatasetError, CheckpointError, TrainingError, ValueError) as error:
        print(f"detr {args.command}: error: {_own_line(error)}", file=sys.stderr)
        return 1
    return 0


def _own_line(error: Exception) -> str:
    """The error's message; raised in a DataLoader worker, it comes wrapped in the worker's
    traceback, whose last line is "module.ErrorType: message"."""
    text = str(error)
    if "\nOriginal Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


if __name__ == "__main__":
    sys.exit(main())
