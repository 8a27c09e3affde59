"""Convergence on the built-in dataset: COCO AP of the small preset against CPU minutes.

    python benchmarks/convergence.py --out runs/convergence
    python benchmarks/convergence.py --minutes 5 --set train.lr=1e-4 model.num_queries=20

Trains the small preset as configured (or until --minutes), evaluating on the
val split every epoch, and prints a table of (minutes, epoch, step, AP, AP50,
AP75) read back from the run's metrics.jsonl. Minutes count training and the
evaluations. Not a test: it takes as long as the run does (about 11 minutes
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

from detr.config import apply_settings, preset
from detr.data.sources import default_data_dir, find_split
from detr.data.synthetic import write_dataset
from detr.engine.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, help="stop after this many minutes (default: the preset's epochs)")
    parser.add_argument("--out", default="runs/convergence")
    parser.add_argument("--data", help="dataset folder (default: the built-in dataset)")
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override preset fields, e.g. train.lr=2e-4 model.num_queries=30")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    root = Path(args.data) if args.data else write_dataset(default_data_dir())
    config = preset("small")
    config.train.time_budget_minutes = args.minutes
    config.train.eval_every = args.eval_every
    apply_settings(config, args.set)
    out = Path(args.out)
    if (out / "metrics.jsonl").exists():
        (out / "metrics.jsonl").unlink()
    trainer = Trainer(config, find_split(root, "train"), find_split(root, "val"), out, "cpu", progress=False)
    started = time.time()
    trainer.fit()
    wall = (time.time() - started) / 60

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_AP" in r]
    print(f"\nsmall preset on {root} ({len(trainer.train_set)} train / {len(trainer.val_set)} val images)")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; wall clock incl. evaluation: {wall:.1f} min")
    print(f"overrides: {args.set or 'none'}")
    print(f"{'train min':>9} {'epoch':>5} {'step':>6} {'AP':>6} {'AP50':>6} {'AP75':>6}")
    for r in evals:
        print(f"{r['minutes']:9.1f} {r['epoch']:5d} {r['step']:6d} {r['val_AP']:6.3f} {r['val_AP50']:6.3f} "
              f"{r['val_AP75']:6.3f}")


if __name__ == "__main__":
    main()
