"""`detr eval`: COCO AP of a checkpoint (or an exported ONNX graph) on a dataset split."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from detr.commands.shared_flags import add_common, add_speed, add_split_files, add_weights, chosen_predictor, \
    data_root, given_split
from detr.data.coco import CocoDetection, DatasetError
from detr.data.sources import eval_loader, find_split
from detr.engine.box_counts import DEFAULT_THRESHOLD
from detr.engine.evaluate import evaluate, format_per_class


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help="COCO AP of a checkpoint on a dataset split")
    add_common(parser)
    add_weights(parser)
    parser.add_argument("--split", default="val")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", help="where to write the detections json")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="count objects found, duplicate boxes and boxes on nothing at this score, "
                             "as `detr predict --threshold` draws them")
    parser.add_argument("--class-pairs", type=int, metavar="N",
                        help="read each image's N best (query, class) pairs, or with 0 each query's best class, "
                             "instead of the checkpoint's model.class_pairs")
    add_split_files(parser, "val", "evaluate on this COCO json and images folder instead of --data's --split")
    add_speed(parser)
    parser.set_defaults(run=run, workers=0)
    return parser


def print_report(stats_summary: str, per_class: dict) -> None:
    print(stats_summary)
    print(format_per_class(per_class))


def run(args: argparse.Namespace) -> None:
    predictor = chosen_predictor(args)
    if args.class_pairs is not None:
        if args.class_pairs < 0:
            raise ValueError(f"--class-pairs is 0 or more, not {args.class_pairs}")
        predictor.scoring = dataclasses.replace(predictor.scoring, pairs=args.class_pairs)
    split = given_split(args, "val") or find_split(data_root(args.data), args.split)
    dataset = CocoDetection(split.images, split.annotations, predictor.transforms, predictor.categories)
    if not len(dataset):
        raise DatasetError(f"{split.annotations} lists no images to evaluate")
    loader = eval_loader(dataset, args.batch_size, args.workers)
    results = Path(args.out or Path(args.checkpoint or args.onnx).with_name(f"{args.split}_detections.json"))
    stats, summary, per_class = evaluate(predictor.forward, loader, predictor.device, results,
                                         progress=not args.no_progress, precision=predictor.precision,
                                         scoring=predictor.scoring, threshold=args.threshold)
    print_report(summary, per_class)
    print(f"\ndetections (COCO results format): {results}")
