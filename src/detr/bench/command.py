"""`detr benchmark inference|training ...`: the speed tables against Hugging Face (they print, they
are not tests; transformers and timm must be installed: pip install -e ".[test]")."""

from __future__ import annotations

import argparse

BENCHMARKS = ("inference", "training")


def run(args: argparse.Namespace) -> None:
    if args.which == "inference":
        from detr.bench.inference import main
    else:
        from detr.bench.training import main
    main(args.options)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("benchmark", help="speed and memory against Hugging Face's DETR (prints tables)",
                                   add_help=False)
    parser.add_argument("which", choices=BENCHMARKS)
    parser.add_argument("options", nargs=argparse.REMAINDER, help="that benchmark's options (--help lists them)")
    parser.set_defaults(run=run)
