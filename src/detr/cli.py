"""The `detr` command: train | eval | predict | synth | convert | export | visualize | crowd | benchmark."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from detr.config import PRESETS, ExperimentConfig, apply_settings, preset
from detr.bench.command import add_parser as add_benchmark_parser
from detr.crowd.command import add_parser as add_crowd_parser
from detr.data import synthetic_dense, synthetic_general
from detr.data.coco import CocoDetection, DatasetError
from detr.data.fit import dataset_stats, fit_to_data
from detr.data.sources import Split, default_data_dir, eval_loader, explicit_split, find_split
from detr.data.synthetic import SynthConfig, write_dataset
from detr.engine.checkpoint import CheckpointError
from detr.distributed import is_main, leave_process_group
from detr.engine.evaluate import evaluate, format_per_class
from detr.engine.train import Trainer, TrainingError
from detr.export.onnx_file import OPSET, export_onnx
from detr.inference import Predictor, load
from detr.precision import PRECISIONS
from detr.predict.formats import FORMATS
from detr.predict.frames import collect_inputs
from detr.predict.run import write_predictions
from detr.viz.command import add_parser as add_visualize_parser
from detr.weights import LAYOUTS, convert, load_weights

log = logging.getLogger("detr")


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _data_root(path: str | None) -> Path:
    if path:
        return Path(path)
    root = default_data_dir()
    log.info("no --data given: using the built-in dataset in %s", root)
    return write_dataset(root)


def _given_split(args: argparse.Namespace, split: str) -> Split | None:
    """The split named by --SPLIT-json/--SPLIT-images, or None when neither is given."""
    annotations, images = getattr(args, f"{split}_json"), getattr(args, f"{split}_images")
    return None if annotations is None and images is None else explicit_split(split, annotations, images, None)


def _train_val_splits(args: argparse.Namespace) -> tuple[Split, Split]:
    """--train-json/--val-json ... where given, else the splits of --data (or the built-in dataset)."""
    given = {split: _given_split(args, split) for split in ("train", "val")}
    if all(given.values()):
        return given["train"], given["val"]
    root = _data_root(args.data) if args.data or not any(given.values()) else None
    return tuple(given[s] or explicit_split(s, None, None, root) for s in ("train", "val"))


def _predictor_options(args: argparse.Namespace) -> dict:
    """--precision / --compile where given; the Predictor's defaults otherwise."""
    options = {"precision": args.precision, "compile": args.compile or None}
    return {name: value for name, value in options.items() if value is not None}


def _apply_overrides(config: ExperimentConfig, args: argparse.Namespace) -> ExperimentConfig:
    overrides = {"epochs": args.epochs, "time_budget_minutes": args.minutes, "batch_size": args.batch_size,
                 "lr": args.lr, "lr_backbone": args.lr_backbone, "num_workers": args.workers,
                 "seed": args.seed, "eval_every": args.eval_every,
                 "freeze_backbone": args.freeze_backbone or None, "accumulate_steps": args.accumulate,
                 "precision": args.precision, "compile": args.compile or None}
    for name, value in overrides.items():
        if value is not None:
            setattr(config.train, name, value)
    if args.minutes is not None and args.epochs is None:
        config.train.epochs = None  # the budget is the schedule: the clock ends the run
    return config


def _print_report(stats_summary: str, per_class: dict) -> None:
    print(stats_summary)
    print(format_per_class(per_class))


def cmd_train(args: argparse.Namespace) -> None:
    train_split, val_split = _train_val_splits(args)
    config = _apply_overrides(preset(args.preset), args)
    init = None
    if args.init:
        # The architecture comes from the weights; data and recipe from the preset.
        loaded = load_weights(args.init)
        config.model = loaded.config.model
        init = loaded.state
        log.info("starting from %s", args.init)
    fitted = fit_to_data(config, dataset_stats(train_split.annotations), queries=not args.init)
    apply_settings(config, args.set)  # last, so that it also reaches the model of --init
    log.info("fitted to the data (--set overrides): %s", "; ".join(fitted))
    out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    trainer = Trainer(config, train_split, val_split, out,
                      _device(args.device), progress=not args.no_progress, init=init)
    if args.resume:
        trainer.resume(args.resume)
    log.info("training %s on %s (%d train / %d val images) -> %s", args.preset, train_split.annotations,
             len(trainer.train_set), len(trainer.val_set), out)
    trainer.fit()
    main_process = is_main()
    leave_process_group()  # under torchrun, rank 0 reports alone from here
    if not main_process:
        return
    best = out / "best.pt" if (out / "best.pt").exists() else out / "last.pt"
    predictor = Predictor.from_checkpoint(best, trainer.device, precision=config.train.precision)
    loader = eval_loader(trainer.val_set, config.train.batch_size, config.train.num_workers)
    _, summary, per_class = evaluate(predictor.forward, loader, trainer.device, out / "val_detections.json",
                                     progress=not args.no_progress, precision=predictor.precision)
    print(f"\nCOCO evaluation of {best} on {len(trainer.val_set)} val images:")
    _print_report(summary, per_class)
    samples = [trainer.val_set.images_dir / trainer.val_set.images[i]["file_name"]
               for i in trainer.val_set.image_ids[: args.pictures]]
    pictures = out / "predictions"
    if samples:  # --pictures 0 asks for none
        write_predictions(predictor, samples, pictures, args.threshold, progress=False)
    print(f"\ncheckpoints: {out}/best.pt, {out}/last.pt" + (f"; pictures: {pictures}/" if samples else ""))


def cmd_eval(args: argparse.Namespace) -> None:
    predictor = Predictor.from_checkpoint(args.checkpoint, _device(args.device), **_predictor_options(args))
    split = _given_split(args, "val") or find_split(_data_root(args.data), args.split)
    dataset = CocoDetection(split.images, split.annotations, predictor.transforms, predictor.categories)
    if not len(dataset):
        raise DatasetError(f"{split.annotations} lists no images to evaluate")
    loader = eval_loader(dataset, args.batch_size, args.workers)
    results = Path(args.out or Path(args.checkpoint).with_name(f"{args.split}_detections.json"))
    stats, summary, per_class = evaluate(predictor.forward, loader, predictor.device, results,
                                         progress=not args.no_progress, precision=predictor.precision)
    _print_report(summary, per_class)
    print(f"\ndetections (COCO results format): {results}")


def cmd_predict(args: argparse.Namespace) -> None:
    if args.onnx:
        if args.precision not in (None, "fp32") or args.compile or args.device not in (None, "cpu"):
            raise ValueError("--onnx runs in onnxruntime on the CPU in fp32: drop --precision, --compile, --device")
        predictor = load(args.onnx)
    else:
        predictor = Predictor.from_checkpoint(args.checkpoint, _device(args.device), **_predictor_options(args))
    out = Path(args.out)
    result = write_predictions(predictor, collect_inputs(args.paths), out, args.threshold, args.format,
                               progress=not args.no_progress)
    print(f"detections ({args.format}): {result}; pictures: {out}/")


def cmd_export(args: argparse.Namespace) -> None:
    written = export_onnx(args.source, args.destination, postprocess=args.postprocess,
                          with_mask=not args.no_mask, opset=args.opset)
    print(f"wrote ONNX graph: {written}")


def cmd_convert(args: argparse.Namespace) -> None:
    written = convert(args.source, args.destination, to=args.to)
    print(f"wrote {args.to} layout: {written}")


SYNTH_KINDS = {
    "builtin": (SynthConfig, write_dataset),
    "general": (synthetic_general.GeneralSynthConfig, synthetic_general.write_dataset),
    "dense": (synthetic_dense.DenseSynthConfig, synthetic_dense.write_dataset),
}


def cmd_synth(args: argparse.Namespace) -> None:
    if args.crowd and args.kind != "builtin":
        raise ValueError(f"--crowd is for --kind builtin; drop it (the {args.kind} kind has its own layout)")
    config_class, write = SYNTH_KINDS[args.kind]
    overrides = {name: value for name, value in (("train_images", args.train_images),
                                                 ("val_images", args.val_images), ("seed", args.seed))
                 if value is not None}
    if args.crowd:
        overrides["crowded_fraction"] = 1.0
    out = write(args.out, config_class(**overrides))
    print(f"{args.kind} dataset: {out}/train, {out}/val")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, data_help="dataset folder (default: the built-in dataset)"):
        p.add_argument("--data", help=data_help)
        p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        p.add_argument("--workers", type=int, help="data loading processes")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    def split_files(p, split, why="instead of the one found under --data"):
        p.add_argument(f"--{split}-json", help=f"the {split} split's COCO json, {why} (with --{split}-images)")
        p.add_argument(f"--{split}-images", help=f"the folder of the {split} split's images (with --{split}-json)")

    def speed(p):
        p.add_argument("--precision", choices=PRECISIONS, help="bf16: autocast (for GPUs; default fp32)")
        p.add_argument("--compile", action="store_true", help="torch.compile the model")

    train = sub.add_parser("train", help="train a DETR (default: the small preset on the built-in dataset)")
    common(train)
    train.add_argument("--preset", default="small", choices=sorted(PRESETS))
    train.add_argument("--out", help="run folder (default: runs/<date-time>)")
    train.add_argument("--resume", help="continue the run saved in this checkpoint (e.g. RUN/last.pt)")
    train.add_argument("--init", help="fine-tune from these weights: a checkpoint, detr_r50, ..., an official "
                                      "or Hugging Face file/folder, or a hub id; the class head is "
                                      "re-initialised when the class count differs")
    train.add_argument("--freeze-backbone", action="store_true", help="train the transformer and heads only")
    train.add_argument("--epochs", type=int, help="train this many epochs (with --minutes: whichever ends first)")
    train.add_argument("--minutes", type=float, help="train for this much time; alone, the warm-up and the lr "
                                                     "drop are laid out over it and epochs do not end the run")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--lr-backbone", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--eval-every", type=int, help="evaluate every N epochs")
    train.add_argument("--accumulate", type=int, help="micro-batches per optimiser step (gradient accumulation)")
    train.add_argument("--set", nargs="+", default=[], metavar="SECTION.FIELD=VALUE",
                       help="override any config field, e.g. model.query_groups=1 data.val_scale=160")
    split_files(train, "train")
    split_files(train, "val")
    speed(train)
    train.add_argument("--threshold", type=float, default=0.5, help="score threshold of the pictures")
    train.add_argument("--pictures", type=int, default=8, help="val images drawn at the end")
    train.set_defaults(run=cmd_train)

    ev = sub.add_parser("eval", help="COCO AP of a checkpoint on a dataset split")
    common(ev)
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--split", default="val")
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--out", help="where to write the detections json")
    split_files(ev, "val", "evaluate on this COCO json and images folder instead of --data's --split")
    speed(ev)
    ev.set_defaults(run=cmd_eval, workers=0)

    pr = sub.add_parser("predict", help="detect objects in images, videos or folders of images or frames")
    pr.add_argument("paths", nargs="+", help="images, videos (with PyAV installed) or folders")
    weights = pr.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", help="a checkpoint, named model, official/HF file or folder, or hub id")
    weights.add_argument("--onnx", help="a .onnx file written by `detr export` (runs in onnxruntime on the CPU)")
    pr.add_argument("--threshold", type=float, default=0.5)
    pr.add_argument("--out", default="predictions", help="folder for the drawn images or frames and the detections")
    pr.add_argument("--format", default="coco", choices=FORMATS,
                    help="coco: one detections.json; voc: one Pascal VOC xml per image or frame; "
                         "yolo: one txt per image or frame (class cx cy w h score) and classes.txt")
    pr.add_argument("--device")
    pr.add_argument("--no-progress", action="store_true")
    speed(pr)
    pr.set_defaults(run=cmd_predict)

    kinds = "\n".join(f"  {kind:8} {purpose}" for kind, purpose in (
        ("builtin", "square images of shapes whose colour follows the class, a quarter crowded;\n"
                    "           the dataset the presets were tuned on"),
        ("general", "5 shapes in any colour, varied non-square sizes, small objects, grey and JPEG\n"
                    "           files: does a recipe carry over to data it was not tuned on?"),
        ("dense", "2 classes, 15-40 small objects an image in rows and clusters overlapping at\n"
                  "           IoU 0.1-0.85: convergence where one-to-one matching is hardest")))
    sy = sub.add_parser("synth", help="write a synthetic dataset (default: the built-in one)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description=f"kinds (recipes are chosen on builtin and reported on all three):\n{kinds}")
    sy.add_argument("--kind", choices=list(SYNTH_KINDS), default="builtin", help="which dataset (see above)")
    sy.add_argument("--out", required=True)
    for flag, field in (("--train-images", "train_images"), ("--val-images", "val_images")):
        defaults = ", ".join(f"{kind} {getattr(config, field)}" for kind, (config, _) in SYNTH_KINDS.items())
        sy.add_argument(flag, type=int, help=f"default: the kind's ({defaults})")
    sy.add_argument("--seed", type=int, help=f"default {SynthConfig.seed}")
    sy.add_argument("--crowd", action="store_true", help="builtin only: every image crowded: rows of same-class "
                                                          "objects overlapping at IoU 0.1-0.85")
    sy.set_defaults(run=cmd_synth)

    co = sub.add_parser("convert", help="convert weights between our, the official and the HF layouts")
    co.add_argument("source", help="a checkpoint, named model, official/HF file or folder, or hub id")
    co.add_argument("destination", help="a folder (ours, hf) or a .pth file (official)")
    co.add_argument("--to", default="ours", choices=LAYOUTS)
    co.set_defaults(run=cmd_convert)

    ex = sub.add_parser("export", help="write a model as an ONNX graph (dynamic batch, height and width)")
    ex.add_argument("source", help="a checkpoint, named model, official/HF file or folder, or hub id")
    ex.add_argument("destination", help="the .onnx file to write")
    ex.add_argument("--postprocess", action="store_true",
                    help="put post-processing in the graph: it takes image_sizes [B, 2] (original height, "
                         "width) and gives scores, labels and xyxy pixel boxes per query")
    ex.add_argument("--no-mask", action="store_true",
                    help="no padding-mask input: for single images or equal-sized batches")
    ex.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    ex.set_defaults(run=cmd_export)

    add_visualize_parser(sub)
    add_crowd_parser(sub)
    add_benchmark_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (DatasetError, CheckpointError, TrainingError, ValueError) as error:
        print(f"detr {args.command}: error: {_own_line(error)}", file=sys.stderr)
        return 1
    return 0


def _own_line(error: Exception) -> str:
    """The error's message; raised in a DataLoader worker, it comes wrapped in the worker's
    traceback, whose last line is "module.ErrorType: message"."""
    text = str(error)
    if "\nOriginal Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


if __name__ == "__main__":
    sys.exit(main())
