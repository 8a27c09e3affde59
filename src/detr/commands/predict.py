"""`detr predict`: detect objects in images, videos or folders, with a checkpoint or an ONNX graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from detr.commands.shared_flags import add_speed, add_weights, chosen_predictor
from detr.predict.formats import FORMATS
from detr.predict.frames import collect_inputs
from detr.predict.run import write_predictions


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("predict", help="detect objects in images, videos or folders of images or frames")
    parser.add_argument("paths", nargs="+", help="images, videos (with PyAV installed) or folders")
    add_weights(parser)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--out", default="predictions",
                        help="folder for the drawn images or frames and the detections")
    parser.add_argument("--format", default="coco", choices=FORMATS,
                        help="coco: one detections.json; voc: one Pascal VOC xml per image or frame; "
                             "yolo: one txt per image or frame (class cx cy w h score) and classes.txt")
    parser.add_argument("--device")
    parser.add_argument("--no-progress", action="store_true")
    add_speed(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    predictor = chosen_predictor(args)
    out = Path(args.out)
    result = write_predictions(predictor, collect_inputs(args.paths), out, args.threshold, args.format,
                               progress=not args.no_progress)
    print(f"detections ({args.format}): {result}; pictures: {out}/")
