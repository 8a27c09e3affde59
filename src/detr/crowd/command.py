"""`detr crowd [--data D] [--checkpoint C | --train [--quick]]`: the overlap histogram of a
dataset and the NMS ceiling on it, in seconds; with a checkpoint, the model's recall per
overlap bin with and without NMS; with --train, DETR against an NMS detector trained for
the same time."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import torch

from detr.config import PRESETS, CrowdBenchmarkConfig, SynthConfig, crowd_quick
from detr.crowd.comparison import NMS_THRESHOLDS, compare
from detr.crowd.nms_ceiling import nms_ceiling
from detr.crowd.overlap import BIN_NAMES, histogram
from detr.crowd.recall import apply_nms
from detr.crowd.table import format_table, score
from detr.data.coco import CocoDetection
from detr.data.sources import default_data_dir, eval_loader, find_split
from detr.data.synthetic import write_dataset
from detr.engine.evaluate import predict_dataset
from detr.inference import Predictor


def ground_truth_boxes(dataset: CocoDetection) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(xyxy boxes, labels) of each image's non-crowd annotations, without reading any pixels."""
    return [dataset.target_boxes(image_id) for image_id in dataset.image_ids]


def report(per_image: list[tuple[torch.Tensor, torch.Tensor]], draws: int) -> str:
    counts = histogram(per_image)
    lines = ["objects by their largest IoU with another object of their class:",
             "  " + "  ".join(f"{name:>10}" for name in BIN_NAMES),
             "  " + "  ".join(f"{n:>10d}" for n in counts),
             f"NMS ceiling: share of ground-truth boxes that class-wise NMS keeps (random scores, {draws} draws):"]
    for threshold in NMS_THRESHOLDS:
        shares = nms_ceiling(per_image, threshold, draws)
        cells = "  ".join(f"{'-':>10}" if math.isnan(s) else f"{s:>10.3f}" for s in shares)
        lines.append(f"  NMS@{threshold:<4} {cells}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    if args.train or args.quick:
        return run_comparison(args)
    if args.data is None:
        raise ValueError("give --data D (or --train to use the built-in crowd data)")
    split = find_split(args.data, args.split)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device) if args.checkpoint else None
    dataset = CocoDetection(split.images, split.annotations, predictor and predictor.transforms,
                            predictor and predictor.categories)
    print(f"{args.data} ({args.split}: {len(dataset)} images)")
    print(report(ground_truth_boxes(dataset), args.draws))
    if predictor is None:
        return
    results = predict_dataset(predictor.forward, eval_loader(dataset, 8, 0), predictor.device,
                              scoring=predictor.scoring)
    ground_truth = dataset.ground_truth()
    print(f"recall per overlap bin (COCO matching, 100 detections an image) of {args.checkpoint}:")
    print(format_table([score("DETR", ground_truth, results),
                        score("DETR+NMS@0.45", ground_truth, apply_nms(results, 0.45))]))


def run_comparison(args: argparse.Namespace) -> None:
    config = crowd_quick() if args.quick else CrowdBenchmarkConfig()
    if args.minutes is not None:
        config = dataclasses.replace(config, minutes=args.minutes)
    if args.preset is not None:
        config = dataclasses.replace(config, detr_preset=args.preset)
    out = Path(args.out)
    if args.data is None:
        synth = SynthConfig(train_images=config.train_images, val_images=config.val_images, crowded_fraction=1.0,
                            seed=config.seed)
        data = write_dataset(out / "data" if args.quick else default_data_dir().parent / "synth-crowd", synth)
    else:
        data = Path(args.data)
    train, val = find_split(data, "train"), find_split(data, args.split)
    print(f"{data} ({args.split} split)")
    print(report(ground_truth_boxes(CocoDetection(val.images, val.annotations)), args.draws))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    compare(config, train, val, out, device, args.queries, progress=not args.no_progress, settings=args.set)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("crowd", help="how crowded a dataset is, what NMS would remove from it, "
                                                 "and (--train) DETR against an NMS detector on it")
    parser.add_argument("--data", help="dataset folder (with --train, default: the built-in crowd data)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--draws", type=int, default=5, help="random scorings averaged for the NMS ceiling")
    parser.add_argument("--checkpoint", help="also score this model per overlap bin, as is and with NMS@0.45")
    parser.add_argument("--train", action="store_true",
                        help=f"train DETR and an NMS detector for the same time on the train split and "
                             f"compare them (default {CrowdBenchmarkConfig.minutes:g} minutes each)")
    parser.add_argument("--quick", action="store_true", help="--train on tiny data for a few seconds (smoke test)")
    parser.add_argument("--minutes", type=float, help="training minutes of each detector")
    parser.add_argument("--queries", type=int, help="DETR's object queries (default: the preset's, or 1.5 "
                                                     "times the most objects in a training image if that is more)")
    parser.add_argument("--set", nargs="+", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override any of DETR's config fields, as for detr train")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="DETR's preset, whose image sizes (fitted to the data) both detectors use "
                             f"(default: {CrowdBenchmarkConfig.detr_preset})")
    parser.add_argument("--out", default="runs/crowd", help="where --train writes its table, figure and runs")
    parser.add_argument("--device")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=run)
