"""`detr benchmark inference|training|latency|budget ...` (or `detr bench ...`): tables that print
and are not tests. inference and training: speed against Hugging Face (transformers and timm must
be installed: pip install -e ".[test]"); latency: end to end on the CPU against the YOLO peer;
budget: trained runs against the YOLO peer, cost, throughput, AP and latency in one table."""

from __future__ import annotations

import argparse

BENCHMARKS = ("inference", "training", "latency", "budget")


def run(args: argparse.Namespace) -> None:
    if args.which == "inference":
        from detr.bench.inference import main
    elif args.which == "latency":
        from detr.bench.latency import main
    elif args.which == "budget":
        from detr.bench.budget import main
    else:
        from detr.bench.training import main
    main(args.options)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("benchmark", aliases=["bench"], add_help=False,
                                   help="speed tables against Hugging Face's DETR; latency and a trained budget against a YOLO")
    parser.add_argument("which", choices=BENCHMARKS)
    parser.add_argument("options", nargs=argparse.REMAINDER, help="that benchmark's options (--help lists them)")
    parser.set_defaults(run=run)
