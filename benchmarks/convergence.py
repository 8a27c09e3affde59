"""Convergence on the built-in dataset: COCO AP of the small preset against CPU minutes.

    python benchmarks/convergence.py --out runs/convergence
    python benchmarks/convergence.py --minutes 5 --set train.lr=1e-4 model.num_queries=20
    python benchmarks/convergence.py --preset fast_fine --minutes 10 --yolo   # and YOLOv8n, same minutes

Trains the small preset as configured (or until --minutes), evaluating on the
val split every epoch, and prints a table of (minutes, epoch, step, AP, AP50,
AP75, and the duplicate rate at score 0.5) read back from the run's
metrics.jsonl. Minutes count training and the evaluations. With --yolo (and
Ultralytics installed: `pip install ultralytics`, AGPL-3.0, never a dependency
of detr), YOLOv8n from its yaml then trains for the same minutes on the same
data with its own defaults, and its final AP and duplicate rate print beside,
scored by the same code. Not a test: it takes as long as the run does (about 11 minutes
on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

from detr.config import CrowdBenchmarkConfig, apply_settings, preset
from detr.crowd.comparison import train_yolo_peer
from detr.engine.box_counts import count_boxes
from detr.engine.evaluate import coco_evaluate
from detr.data.sources import default_data_dir, find_split
from detr.data.synthetic import write_dataset
from detr.engine.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, help="stop after this many minutes (default: the preset's epochs)")
    parser.add_argument("--out", default="runs/convergence")
    parser.add_argument("--data", help="dataset folder (default: the built-in dataset)")
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--preset", default="small", help="DETR's preset (default: small)")
    parser.add_argument("--yolo", action="store_true", help="also train YOLOv8n for the same --minutes (needs ultralytics)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override preset fields, e.g. train.lr=2e-4 model.num_queries=30")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    root = Path(args.data) if args.data else write_dataset(default_data_dir())
    if args.yolo and args.minutes is None:
        parser.error("--yolo needs --minutes: the YOLO peer trains for the same time")
    config = preset(args.preset)
    config.train.time_budget_minutes = args.minutes
    config.train.eval_every = args.eval_every
    apply_settings(config, args.set)
    out = Path(args.out)
    if (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()
    train_split, val_split = find_split(root, "train"), find_split(root, "val")
    trainer = Trainer(config, train_split, val_split, out, "cpu", progress=False)
    started = time.time()
    trainer.fit()
    wall = (time.time() - started) / 60

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_AP" in r]
    print(f"\n{args.preset} preset on {root} ({len(trainer.train_set)} train / {len(trainer.val_set)} val images)")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; wall clock incl. evaluation: {wall:.1f} min")
    print(f"overrides: {args.set or 'none'}")
    print(f"{'train min':>9} {'epoch':>5} {'step':>6} {'AP':>6} {'AP50':>6} {'AP75':>6} {'dup@0.5':>7}")
    for r in evals:
        print(f"{r['minutes']:9.1f} {r['epoch']:5d} {r['step']:6d} {r['val_AP']:6.3f} {r['val_AP50']:6.3f} "
              f"{r['val_AP75']:6.3f} {r.get('val_boxes_duplicate_rate', float('nan')):7.1%}")
    if args.yolo:
        peer = CrowdBenchmarkConfig(minutes=args.minutes, seed=config.train.seed)
        yolo = train_yolo_peer(peer, train_split, val_split, config.data.val_scale, out / "yolo",
                               torch.device("cpu"), progress=False)
        if yolo is not None:
            results, run = yolo
            ground_truth = trainer.val_set.ground_truth()
            stats = coco_evaluate(ground_truth, results)[0]
            counts = count_boxes(ground_truth, results)
            print(f"YOLOv8n, {args.minutes:g} min, {run['steps']} optimiser steps: AP {stats['AP']:.3f} "
                  f"AP50 {stats['AP50']:.3f} AP75 {stats['AP75']:.3f}, dup@0.5 {counts.duplicate_rate:.1%}")


if __name__ == "__main__":
    main()
