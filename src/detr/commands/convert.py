"""`detr convert`: weights from one layout (ours, the official, HF) to another."""

from __future__ import annotations

import argparse

from detr.weights import LAYOUTS, convert


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("convert", help="convert weights between our, the official and the HF layouts")
    parser.add_argument("source", help="a checkpoint, named model, official/HF file or folder, or hub id")
    parser.add_argument("destination", help="a folder (ours, hf) or a .pth file (official)")
    parser.add_argument("--to", default="ours", choices=LAYOUTS)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    written = convert(args.source, args.destination, to=args.to)
    print(f"wrote {args.to} layout: {written}")
