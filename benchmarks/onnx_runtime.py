"""onnxruntime against PyTorch on the CPU: DETR R50 (random weights), 800x1066 images.

Prints a table of median seconds per batch and the ratio (PyTorch / onnxruntime,
above 1 means onnxruntime is faster). Both run fp32 with the same thread count;
PyTorch runs as Predictor does (channels-last backbone, inference mode).

    PYTHONPATH=src python benchmarks/onnx_runtime.py --runs 5 --batches 1 8
    PYTHONPATH=src python benchmarks/onnx_runtime.py --quick   # a seconds-long check that it runs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch

from detr.bench.timing import median_time
from detr.config import ExperimentConfig, preset
from detr.export import export_onnx
from detr.export.runtime import session_options
from detr.model import build_model
from detr.weights import LoadedWeights
from detr.weights.coco_names import numbered_categories


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per cell (the median is shown)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1066)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true",
                        help="the small preset on 128x160 images, batches 1 and 2, one run: checks the script")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.batches, args.height, args.width = 1, [1, 2], 128, 160
    torch.set_num_threads(args.threads)
    config = preset("small") if args.quick else ExperimentConfig()
    name = "the small preset" if args.quick else "DETR R50"
    model = build_model(config.model).eval()
    weights = LoadedWeights(config, model.state_dict(), numbered_categories(config.model.num_classes))
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(weights, Path(folder) / "model.onnx")
        session = ort.InferenceSession(str(path), session_options(ort, args.threads),
                                       providers=["CPUExecutionProvider"])
    model.backbone.use_channels_last()
    cpu = torch.device("cpu")
    print(f"{name}, {args.height}x{args.width}, fp32, {args.threads} threads, median of {args.runs} runs\n")
    print("| batch | PyTorch s | onnxruntime s | PyTorch / onnxruntime |")
    print("|---|---|---|---|")
    for batch in args.batches:
        images = torch.randn(batch, 3, args.height, args.width)
        mask = torch.zeros(batch, args.height, args.width, dtype=torch.bool)
        feeds = {"images": images.numpy(), "mask": mask.numpy()}

        def run_torch():
            with torch.inference_mode():
                model(images, mask)

        torch_s, _ = median_time(run_torch, args.runs, cpu)
        onnx_s, _ = median_time(lambda: session.run(None, feeds), args.runs, cpu)
        print(f"| {batch} | {torch_s:.3f} | {onnx_s:.3f} | {torch_s / onnx_s:.2f} |")


if __name__ == "__main__":
    main()
