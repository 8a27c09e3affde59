"""`detr predict`: detect objects in images, videos or folders, with a checkpoint or an ONNX graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from detr.commands.shared_flags import add_speed, device, predictor_options
from detr.inference import Predictor
from detr.predictors import load
from detr.predict.formats import FORMATS
from detr.predict.frames import collect_inputs
from detr.predict.run import write_predictions


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("predict", help="detect objects in images, videos or folders of images or frames")
    parser.add_argument("paths", nargs="+", help="images, videos (with PyAV installed) or folders")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="a checkpoint, named model, official/HF file or folder, or hub id")
    weights.add_argument("--onnx", help="a .onnx file written by `detr export` (runs in onnxruntime on the CPU)")
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
    if args.onnx:
        if args.precision not in (None, "fp32") or args.compile or args.device not in (None, "cpu"):
            raise ValueError("--onnx runs in onnxruntime on the CPU in fp32: drop --precision, --compile, --device")
        predictor = load(args.onnx)
    else:
        predictor = Predictor.from_checkpoint(args.checkpoint, device(args.device), **predictor_options(args))
    out = Path(args.out)
    result = write_predictions(predictor, collect_inputs(args.paths), out, args.threshold, args.format,
                               progress=not args.no_progress)
    print(f"detections ({args.format}): {result}; pictures: {out}/")
