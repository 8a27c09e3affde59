"""`detr train`: train a DETR, then evaluate the best checkpoint and draw a few val images."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from detr.commands.evaluate import print_report
from detr.commands.shared_flags import add_common, add_speed, add_split_files, add_train_flag, device, \
    train_overrides, train_val_splits
from detr.config import DEFAULT_PRESET, PRESETS, ExperimentConfig, apply_settings, preset, setting_name
from detr.data.fit import fit_with_settings
from detr.data.sources import eval_loader, training_splits
from detr.distributed import is_main, leave_process_group
from detr.engine.box_counts import DEFAULT_THRESHOLD
from detr.engine.evaluate import evaluate
from detr.engine.local_processes import process_count, run_in_processes
from detr.engine.train import Trainer
from detr.inference import Predictor
from detr.predict.run import write_predictions
from detr.weights import load_weights

log = logging.getLogger("detr")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help=f"train a DETR (default: the {DEFAULT_PRESET} preset on the built-in dataset)")
    add_common(parser, train=True)
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--out", help="run folder (default: runs/<date-time>)")
    parser.add_argument("--resume", help="continue the run saved in this checkpoint (e.g. RUN/last.pt)")
    parser.add_argument("--init", help="fine-tune from these weights: a checkpoint, detr_r50, ..., an official "
                                       "or Hugging Face file/folder, or a hub id; the class head is "
                                       "re-initialised when the class count differs")
    add_train_flag(parser, "--freeze-backbone", "freeze_backbone", action="store_true",
                   help="train the transformer and heads only")
    add_train_flag(parser, "--epochs", "epochs", type=int,
                   help="train this many epochs (with --minutes: whichever ends first)")
    add_train_flag(parser, "--minutes", "time_budget_minutes", type=float,
                   help="train for this much time; alone, the warm-up and the lr "
                        "drop are laid out over it and epochs do not end the run")
    add_train_flag(parser, "--batch-size", "batch_size", type=int)
    add_train_flag(parser, "--lr", "lr", type=float)
    add_train_flag(parser, "--lr-backbone", "lr_backbone", type=float)
    add_train_flag(parser, "--seed", "seed", type=int)
    add_train_flag(parser, "--eval-every", "eval_every", type=int, help="evaluate every N epochs")
    add_train_flag(parser, "--accumulate", "accumulate_steps", type=int,
                   help="micro-batches per optimiser step (gradient accumulation)")
    add_train_flag(parser, "--processes", "processes", type=int,
                   help="data-parallel processes on this CPU, each with its share of the cores and "
                        "--batch-size images (at most one per core; 1: a single process)")
    parser.add_argument("--set", nargs="+", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override any config field, e.g. model.query_groups=1 data.val_scale=160")
    add_split_files(parser, "train")
    add_split_files(parser, "val")
    add_speed(parser, train=True)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="score threshold of the pictures and of the box counts (found, duplicates) in the log")
    parser.add_argument("--pictures", type=int, default=8, help="val images drawn at the end")
    parser.set_defaults(run=run)
    return parser


def _apply_overrides(config: ExperimentConfig, args: argparse.Namespace) -> ExperimentConfig:
    given = train_overrides(args)
    for name, value in given.items():
        setattr(config.train, name, value)
    if "time_budget_minutes" in given and "epochs" not in given:
        config.train.epochs = None  # the budget is the schedule: the clock ends the run
    return config


def run(args: argparse.Namespace) -> None:
    # The data is checked first, json and image files, so that a damaged dataset is one line
    # before any weights are fetched, model built or run folder written.
    train_split, val_split = training_splits(*train_val_splits(args))
    config = _apply_overrides(preset(args.preset), args)
    apply_settings(config, [item for item in args.set if setting_name(item) == "train.processes"])
    processes = process_count(config.train.processes, device(args.device))
    if processes > 1:  # each process runs this command again, as one of the group
        run_in_processes(run, args, processes)
        return
    init = None
    if args.init:
        # The architecture comes from the weights; data and recipe from the preset.
        loaded = load_weights(args.init)
        config.model = loaded.config.model
        if config.loss.dense_proposals and config.model.queries != "selected":
            # The preset's recipe trains the selected queries' proposals, which these weights' model lacks.
            config.loss.dense_proposals = False
            log.info("loss.dense_proposals off: the model of %s does not select its queries", args.init)
        init = loaded.state
        log.info("starting from %s", args.init)
    # The user's settings win over the fit, and reach the model of --init, whose query count stays.
    fitted = fit_with_settings(config, train_split.records, args.set, queries=not args.init)
    out = Path(args.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    trainer = Trainer(config, train_split, val_split, out,
                      device(args.device), progress=not args.no_progress, init=init, threshold=args.threshold)
    log.info("fitted to the data (--set overrides): %s", "; ".join(fitted))  # after the Trainer: rank 0 alone
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
                                     progress=not args.no_progress, precision=predictor.precision,
                                     scoring=predictor.scoring, threshold=args.threshold)
    print(f"\nCOCO evaluation of {best} on {len(trainer.val_set)} val images:")
    print_report(summary, per_class)
    samples = [trainer.val_set.images_dir / trainer.val_set.images[i]["file_name"]
               for i in trainer.val_set.image_ids[: args.pictures]]
    pictures = out / "predictions"
    if samples:  # --pictures 0 asks for none
        write_predictions(predictor, samples, pictures, args.threshold, progress=False)
    print(f"\ncheckpoints: {out}/best.pt, {out}/last.pt" + (f"; pictures: {pictures}/" if samples else ""))
