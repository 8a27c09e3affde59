"""`detr export`: write a model as an ONNX graph."""

from __future__ import annotations

import argparse

from detr.export.onnx_file import MASK_MODES, OPSET, export_onnx


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export", help="write a model as an ONNX graph (dynamic batch, height and width)")
    parser.add_argument("source", help="a checkpoint, named model, official/HF file or folder, or hub id")
    parser.add_argument("destination", help="the .onnx file to write")
    parser.add_argument("--postprocess", action="store_true",
                        help="put post-processing in the graph: it takes image_sizes [B, 2] (original height, "
                             "width) and gives scores, labels and xyxy pixel boxes per query")
    parser.add_argument("--mask", choices=MASK_MODES, default="switch",
                        help="switch (default): the graph takes the padding mask and runs a copy of itself "
                             "without the mask's products on batches without padding (one image, or images of "
                             "one size); the file holds the weights twice. always: the masked graph alone. "
                             "none: no mask input, for single images or equal-sized batches")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    written = export_onnx(args.source, args.destination, postprocess=args.postprocess,
                          mask=args.mask, opset=args.opset)
    print(f"wrote ONNX graph: {written}")
