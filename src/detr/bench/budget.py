"""What a training budget buys: one table of trained detectors, DETR runs of `detr train` and
the YOLO peer, each scored on the same val images by the same code and timed on the same CPU.

    detr train --data D --minutes 10 --out runs/new
    detr train --data D --minutes 10 --out runs/old --set model.hidden_dim=128 ...
    detr benchmark budget --data D --detr runs/new runs/old --yolo-minutes 10 --yolo-out runs/yolo
    detr benchmark budget --data D --detr runs/new runs/old --yolo-run runs/yolo     # no training
    detr benchmark budget --data D --detr runs/new --yolo-minutes 10 --yolo-out runs/yolo224 --yolo-size 224

Columns: parameters and forward GFLOPs at the detector's input (the first val image, resized as
the detector resizes it); images trained on per second of its run's clock (DETR: `detr train`'s
count over its budget, its evaluations left out; YOLO: its mosaics over its epochs, its
validation after the last left out); COCO AP and AP50 (100 detections an image); at
--threshold, the share of the boxes that fall on an object already found (crowd/table.py's
count); end-to-end latency, decoded images in and detections out, ms per image at each
--batches, in PyTorch and through the exported graph in onnxruntime (`detr benchmark latency`'s
paths; the calls of all rows interleaved in rounds). The YOLO peer needs Ultralytics (AGPL-3.0,
never a dependency: pip install ultralytics). Not a test: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import functools
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from detr.bench.latency import CPU, forward_gflops, val_images
from detr.bench.timing import interleaved_ms
from detr.commands.shared_flags import data_root
from detr.config import CrowdBenchmarkConfig
from detr.data.coco import CocoDetection
from detr.data.coco_records import Categories
from detr.data.sources import eval_loader, find_split
from detr.engine.box_counts import DEFAULT_THRESHOLD, count_boxes
from detr.engine.evaluate import coco_evaluate, predict_dataset
from detr.engine.train import training_seconds
from detr.inference import Predictor
from detr.weights import load_weights

PATHS = ("PyTorch", "onnxruntime")


@dataclass
class Row:
    name: str
    parameters: float  # millions
    gflops: float
    input_size: tuple[int, int]
    images_per_second: float | None  # None: the run did not count its images
    ap: float
    ap50: float
    duplicate_rate: float
    ms: dict[tuple[str, int], float] = field(default_factory=dict)  # (path, batch) -> ms per image


def run_throughput(run: Path) -> float | None:
    """Images a second of a `detr train` folder's run, from its last checkpoint's count and its
    clock without its evaluations (runs that did not keep their time evaluating: with it)."""
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    images = state.get("images")
    seconds = training_seconds(state.get("elapsed", 0.0), state.get("eval_seconds", 0.0))
    return images / seconds if images and seconds > 0 else None


def _scored(name: str, records: list[dict[str, Any]], ground_truth: dict[str, Any], threshold: float) -> dict:
    stats, _, _ = coco_evaluate(ground_truth, records)
    return {"name": name, "ap": stats["AP"], "ap50": stats["AP50"],
            "duplicate_rate": count_boxes(ground_truth, records, threshold).duplicate_rate}


# What a row's latency cells call: a path's name -> a function of a list of images.
Paths = dict[str, Callable[[list[torch.Tensor]], object]]


def time_rows(rows: list[tuple[Row, Paths]], images: list[torch.Tensor], batches: list[int], runs: int) -> None:
    """Fill each row's latency cells, the calls of all rows interleaved (`interleaved_ms`)."""
    cells = {(index, name, batch): (functools.partial(call, images[:batch]), batch)
             for index, (_, paths) in enumerate(rows) for name, call in paths.items() for batch in batches}
    for (index, name, batch), ms in interleaved_ms(cells, runs).items():
        rows[index][0].ms[name, batch] = ms


def detr_row(run: Path, data: Path, images: list[torch.Tensor], args: argparse.Namespace,
             folder: Path) -> tuple[Row, Paths]:
    """A `detr train` folder's row (its best.pt scored, its last.pt's throughput) and what times it."""
    from detr.export import export_onnx
    from detr.export.runtime import OnnxPredictor

    weights = load_weights(run / "best.pt")
    predictor = Predictor.from_weights(weights, CPU)
    split = find_split(data, "val")
    dataset = CocoDetection(split.images, split.annotations, predictor.transforms, predictor.categories)
    records = predict_dataset(predictor.forward, eval_loader(dataset, 8, 0), CPU, progress=False,
                              scoring=predictor.scoring)
    onnx = OnnxPredictor(export_onnx(weights, folder / f"{run.name}.onnx"), threads=args.threads)
    paths = {"PyTorch": lambda batch: predictor.predict_batch(batch, args.threshold),
             "onnxruntime": lambda batch: onnx.predict_batch(batch, args.threshold)}
    first = predictor.prepare(images[0])[None]
    row = Row(parameters=sum(p.numel() for p in predictor.model.parameters()) / 1e6,
              gflops=forward_gflops(lambda: predictor.model(first)), input_size=tuple(first.shape[-2:]),
              images_per_second=run_throughput(run),
              **_scored(f"DETR {run.name}", records, dataset.ground_truth(), args.threshold))
    return row, paths


def yolo_row(run: dict[str, Any], data: Path, categories: Categories, args: argparse.Namespace,
             folder: Path) -> tuple[Row, Paths]:
    """The YOLO peer's row, from what `train_yolo` wrote, and what times it."""
    from detr.crowd.yolo_peer import YoloLatency, predict_yolo, yolo_name

    yolo = YoloLatency(run["weights"], categories, run["image_size"], folder, args.threshold)
    split = find_split(data, "val")
    config = CrowdBenchmarkConfig()
    records = predict_yolo(yolo.model, config, split, categories, run["image_size"], CPU)
    ground_truth = CocoDetection(split.images, split.annotations, None, categories).ground_truth()
    row = Row(parameters=yolo.parameters, gflops=yolo.gflops, input_size=(yolo.size, yolo.size),
              images_per_second=run["images"] / run["seconds"],
              **_scored(yolo_name(config.yolo_model), records, ground_truth, args.threshold))
    return row, {"PyTorch": yolo.torch, "onnxruntime": yolo.onnx}


def train_yolo_peer(data: Path, minutes: float, image_size: int, out: Path, seed: int) -> dict[str, Any]:
    """Ultralytics' YOLOv8n from its yaml for `minutes` on `data`'s train split (crowd/yolo_peer.py),
    its trainer seeded with `seed`."""
    from dataclasses import replace

    from detr.crowd.yolo_peer import INSTALL_HINT, read_yolo_run, train_yolo, yolo_installed

    if not yolo_installed():
        raise SystemExit(INSTALL_HINT)
    config = replace(CrowdBenchmarkConfig(), minutes=minutes, seed=seed)
    train_yolo(config, find_split(data, "train"), find_split(data, "val"), image_size, CPU, out, progress=False)
    return read_yolo_run(out)


def markdown(rows: list[Row], batches: list[int], threshold: float) -> str:
    timed = [(path, batch) for path in PATHS for batch in batches]
    header = (["detector", "M params", "GFLOPs", "input", "train images/s", "AP", "AP50", f"dups @{threshold:g}"]
              + [f"{path} b{batch} ms" for path, batch in timed])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        rate = "-" if row.images_per_second is None else f"{row.images_per_second:.1f}"
        cells = [row.name, f"{row.parameters:.2f}", f"{row.gflops:.2f}", "x".join(map(str, row.input_size)), rate,
                 f"{row.ap:.3f}", f"{row.ap50:.3f}", f"{100 * row.duplicate_rate:.0f}%"]
        lines.append("| " + " | ".join(cells + [f"{row.ms[key]:.1f}" for key in timed]) + " |")
    return "\n".join(lines)


def ratios(row: Row, peer: Row, batches: list[int]) -> str:
    """`row` against the peer: images a second (above 1: trains on more) and time per image (below 1: faster)."""
    rate = ("-" if row.images_per_second is None or peer.images_per_second is None
            else f"{row.images_per_second / peer.images_per_second:.2f}")
    times = ", ".join(f"{path} b{batch} {row.ms[path, batch] / peer.ms[path, batch]:.2f}"
                      for path in PATHS for batch in batches)
    return f"{row.name} / {peer.name}: train images/s {rate}; ms per image {times}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="detr benchmark budget", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="the dataset the runs trained on (default: the built-in one)")
    parser.add_argument("--detr", type=Path, nargs="+", required=True, metavar="RUN",
                        help="`detr train --out` folders, a row each")
    parser.add_argument("--yolo-run", type=Path, help="a folder the YOLO peer was trained into (--yolo-out)")
    parser.add_argument("--yolo-minutes", type=float, help="train the YOLO peer this long first, into --yolo-out")
    parser.add_argument("--yolo-out", type=Path, help="where --yolo-minutes trains the YOLO peer")
    parser.add_argument("--yolo-size", type=int, metavar="PIXELS",
                        help="the side of the YOLO peer's square input for --yolo-minutes (default: the first "
                             "run's val short side; the DETR's input keeps the image's aspect, so its long side, "
                             "which this square would then hold whole, is the size that shows as much of an image)")
    parser.add_argument("--yolo-seed", type=int, default=CrowdBenchmarkConfig().seed,
                        help="the YOLO peer's training seed for --yolo-minutes (its trainer is deterministic: "
                             "repeated runs need other seeds, as `detr train --seed` for the DETR)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--runs", type=int, default=30, help="timed calls per latency cell (the median is shown)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    if args.yolo_minutes is not None and args.yolo_out is None:
        parser.error("--yolo-minutes trains into --yolo-out: name the folder")
    if args.yolo_minutes is not None and args.yolo_run is not None:
        parser.error("--yolo-run reads a trained YOLO, --yolo-minutes trains one: give one of them")
    if args.yolo_size is not None and args.yolo_minutes is None:
        parser.error("--yolo-size is the input --yolo-minutes trains the peer at; a --yolo-run keeps its own")
    if args.yolo_seed != CrowdBenchmarkConfig().seed and args.yolo_minutes is None:
        parser.error("--yolo-seed seeds the peer --yolo-minutes trains; a --yolo-run keeps its own")
    if args.yolo_size is not None and args.yolo_size < 32:
        parser.error(f"--yolo-size must be at least 32 pixels (the YOLO's stride), not {args.yolo_size}")
    for run in args.detr:
        missing = [name for name in ("best.pt", "last.pt") if not (run / name).is_file()]
        if missing:
            parser.error(f"{run} is not a `detr train` folder: it lacks {' and '.join(missing)}")
    torch.set_num_threads(args.threads)
    data = data_root(args.data and str(args.data))  # the built-in dataset is written if it is not there yet
    images = val_images(data, max(args.batches))
    first = load_weights(args.detr[0] / "best.pt")
    yolo_run = None
    if args.yolo_minutes is not None:
        yolo_run = train_yolo_peer(data, args.yolo_minutes, args.yolo_size or first.config.data.val_scale,
                                   args.yolo_out, args.yolo_seed)
    elif args.yolo_run is not None:
        from detr.crowd.yolo_peer import read_yolo_run

        yolo_run = read_yolo_run(args.yolo_run)
    with tempfile.TemporaryDirectory() as folder:
        timed = [detr_row(run, data, images, args, Path(folder)) for run in args.detr]
        if yolo_run:
            timed.append(yolo_row(yolo_run, data, first.categories, args, Path(folder)))
        time_rows(timed, images, args.batches, args.runs)
    rows = [row for row, _ in timed[:len(args.detr)]]
    peer = timed[-1][0] if yolo_run else None
    print(f"{data}: {len(images)} val images timed, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(markdown(rows + ([peer] if peer else []), args.batches, args.threshold))
    if peer:
        print()
        for row in rows:
            print(ratios(row, peer, args.batches))
