"""End-to-end latency on the CPU: decoded images in, detections out, per path and batch size,
against the YOLO peer on the same images when Ultralytics is installed.

    detr benchmark latency --checkpoint RUN/best.pt --data D --yolo RUN/yolo/weights/last.pt
    detr benchmark latency --data D                  # the default preset, untrained, fitted to D
    detr benchmark latency --quick                   # a seconds-long check that it runs

Paths: PyTorch (`detr.load`'s Predictor) and onnxruntime (`detr export`, then the same
Predictor over the graph), and PyTorch in bf16 on a CPU that multiplies it natively (AMX; its
YOLO column is the YOLO's fp32 PyTorch, Ultralytics' CPU default); for the YOLO, Ultralytics'
`predict` on its PyTorch weights and on its own ONNX export. Each cell is the median of --runs
calls on batches of the data's val images (decoded beforehand), after a warm-up, at --threshold,
in milliseconds per image; the calls of all cells are interleaved in rounds (`interleaved_ms`).
Also prints each model's parameters and forward GFLOPs at its input size. Time trained
models for the figures you report: DETR's work is fixed (its queries, no NMS on the output)
except query selection's NMS over the encoder's tokens, whose cost follows the boxes, and a
YOLO's NMS cost follows how many boxes pass --threshold (`detr crowd --train` and
`benchmarks/convergence.py --yolo` leave a trained YOLO). Not a test.
"""

from __future__ import annotations

import argparse
import functools
import platform
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from detr.bench.timing import interleaved_ms
from detr.data.coco import load_image
from detr.data.sources import default_data_dir, find_split, validated_split
from detr.inference import Predictor, to_uint8_image
from detr.precision import native_bf16
from detr.weights import LoadedWeights, load_weights

CPU = torch.device("cpu")


def val_images(data: Path, count: int) -> list[torch.Tensor]:
    """The first `count` val images of `data`, decoded to uint8 [3, H, W] (what a caller has in hand)."""
    split = validated_split(find_split(data, "val"))
    names = [record["file_name"] for record in list(split.records.images.values())[:count]]
    return [to_uint8_image(load_image(split.images / name)) for name in names]


def _detr_weights(args: argparse.Namespace, data: Path) -> LoadedWeights:
    """--checkpoint's weights, or --preset untrained, fitted to the data as `detr train` fits it."""
    if args.checkpoint:
        return load_weights(args.checkpoint)
    from detr.config import preset
    from detr.data.fit import dataset_stats, fit_to_data
    from detr.model import build_model

    config = preset(args.preset)
    records = validated_split(find_split(data, "train")).records
    config.model.num_classes = len(records.categories.ids)
    fit_to_data(config, dataset_stats(records))
    return LoadedWeights(config, build_model(config.model).state_dict(), records.categories)


def forward_gflops(forward: Callable[[], object]) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        forward()
    return counter.get_total_flops() / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="detr benchmark latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="DETR weights (anything `detr.load` reads); default: --preset, untrained")
    parser.add_argument("--preset", default="fast_fine", help="without --checkpoint (default: %(default)s)")
    parser.add_argument("--data", type=Path, help="a dataset folder whose val images are timed "
                        "(default: the built-in dataset)")
    parser.add_argument("--yolo", help="the YOLO peer's weights (.pt) or yaml (untrained); needs ultralytics")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--runs", type=int, default=30, help="timed calls per cell (the median is shown)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="batches 1 and 2, 3 runs: checks the command")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.runs = [1, 2], 3
    torch.set_num_threads(args.threads)
    data = args.data or default_data_dir()
    images = val_images(data, max(args.batches))
    weights = _detr_weights(args, data)
    detr = Predictor.from_weights(weights, CPU)

    from detr.export import export_onnx
    from detr.export.runtime import OnnxPredictor

    with tempfile.TemporaryDirectory() as folder:
        onnx = OnnxPredictor(export_onnx(weights, Path(folder) / "model.onnx"), threads=args.threads)
        yolo = None
        if args.yolo:
            from detr.crowd.yolo_peer import YoloLatency

            yolo = YoloLatency(args.yolo, weights.categories, weights.config.data.val_scale, Path(folder),
                               args.threshold)
        paths = {"PyTorch": (lambda batch: detr.predict_batch(batch, args.threshold), yolo and yolo.torch),
                 "onnxruntime": (lambda batch: onnx.predict_batch(batch, args.threshold), yolo and yolo.onnx)}
        if native_bf16(CPU):  # the YOLO's column stays its own default, fp32 PyTorch
            bf16 = Predictor(detr.model, weights.categories, weights.config.data, CPU, precision="bf16")
            paths["PyTorch bf16"] = (lambda batch: bf16.predict_batch(batch, args.threshold), yolo and yolo.torch)
        first = detr.prepare(images[0])[None]
        params = sum(p.numel() for p in detr.model.parameters()) / 1e6
        print(f"end-to-end latency (decoded images in, detections at score >= {args.threshold} out), ms per "
              f"image, median of {args.runs} calls; {platform.processor() or platform.machine()}, "
              f"{args.threads} threads, torch {torch.__version__}")
        print(f"DETR: {args.checkpoint or args.preset + ' (untrained)'}, {params:.2f} M parameters, "
              f"{forward_gflops(lambda: detr.model(first)):.2f} GFLOPs at {tuple(first.shape[-2:])}")
        if yolo:
            print(f"YOLO: {args.yolo}, {yolo.parameters:.2f} M parameters, {yolo.gflops:.2f} GFLOPs at "
                  f"{yolo.size}x{yolo.size}")
        print("\n| path | batch | DETR ms/image | YOLO ms/image | DETR / YOLO |")
        print("|---|---:|---:|---:|---:|")
        cells = {(name, batch, model): (functools.partial(call, images[:batch]), batch)
                 for name, calls in paths.items() for batch in args.batches
                 for model, call in zip(("DETR", "YOLO"), calls) if call}
        ms = interleaved_ms(cells, args.runs)
        detr_ms = {(name, batch): ms[name, batch, "DETR"] for name in paths for batch in args.batches}
        for name in paths:
            for batch in args.batches:
                peer = ms.get((name, batch, "YOLO"))
                compared = f"{peer:.1f} | {detr_ms[name, batch] / peer:.2f}" if peer else "- | -"
                print(f"| {name} | {batch} | {detr_ms[name, batch]:.1f} | {compared} |")
        print("\nDETR, PyTorch / onnxruntime (above 1: the exported graph is faster): " + ", ".join(
            f"batch {b} {detr_ms['PyTorch', b] / detr_ms['onnxruntime', b]:.2f}" for b in args.batches))
