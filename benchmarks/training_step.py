"""Where a training step of a preset goes, on a dataset: one process, fixed batches.

Fits the preset to the data as `detr train` does, loads --steps batches once (the loader's
time stays out), then runs the same batches --repeats times and prints the median step and,
from one more pass with every part timed, the milliseconds of each part: the backbone, the
encoder, the fine level, query selection, the decoder, the loss (with its matching), backward,
the optimiser and the EMA. Run two checkouts' copies alternately to compare code (the
machine's noise between runs of one command is a few percent).

    PYTHONPATH=src python benchmarks/training_step.py --data data/general --threads 1
    PYTHONPATH=src python benchmarks/training_step.py --quick    # a seconds-long check that it runs
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from detr.commands.shared_flags import data_root
from detr.config import preset
from detr.data.fit import fit_with_settings
from detr.data.sources import explicit_split, training_splits
from detr.engine.train import Trainer


def _timed(totals: dict[str, float], obj: object, name: str, label: str) -> None:
    """Wrap obj.name so that its wall time adds up under `label`."""
    inner = getattr(obj, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - start
    setattr(obj, name, wrapper)


def _time_parts(trainer: Trainer, totals: dict[str, float]) -> None:
    model = trainer.model
    parts = [(model.backbone, "forward_levels" if model.fine_level is not None else "forward", "backbone"),
             (model.transformer, "encode", "encoder"), (model.fine_level, "forward", "fine level"),
             (model.query_selection, "forward", "query selection"), (model.decoder, "forward", "decoder"),
             (trainer.criterion, "forward", "loss"), (trainer.optimizer, "step", "optimiser"),
             (trainer.ema, "update", "EMA")]
    for obj, name, label in parts:
        if obj is not None:
            _timed(totals, obj, name, label)
    backward = torch.Tensor.backward

    def timed_backward(tensor, *args, **kwargs):
        start = time.perf_counter()
        try:
            return backward(tensor, *args, **kwargs)
        finally:
            totals["backward"] += time.perf_counter() - start
    torch.Tensor.backward = timed_backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a dataset folder (default: the built-in dataset)")
    parser.add_argument("--preset", default="fast_fine")
    parser.add_argument("--set", nargs="*", default=[], dest="settings", help="config overrides, as detr train's")
    parser.add_argument("--steps", type=int, default=40, help="fixed batches a pass")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (the median step is shown)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="3 steps, 1 pass")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 3, 1
    torch.set_num_threads(args.threads)
    root = data_root(args.data)
    train, val = training_splits(explicit_split("train", None, None, root), explicit_split("val", None, None, root))
    config = preset(args.preset)
    fitted = fit_with_settings(config, train.records, args.settings)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, train, val, out, torch.device("cpu"), progress=False)
        batches = iter(trainer.train_loader)
        warmup = [next(batches) for _ in range(3)]
        fixed = [next(batches) for _ in range(args.steps)]
        for batch in warmup:
            trainer._train_step([batch])
        passes = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for batch in fixed:
                trainer._train_step([batch])
            passes.append((time.perf_counter() - start) / args.steps)
        totals: dict[str, float] = defaultdict(float)
        _time_parts(trainer, totals)
        start = time.perf_counter()
        for batch in fixed:
            trainer._train_step([batch])
        timed_pass = (time.perf_counter() - start) / args.steps
    print(f"{args.preset} on {root}: {'; '.join(fitted)}; batch {config.train.batch_size}, {args.threads} "
          f"thread(s), {args.steps} fixed batches")
    print(f"\nstep: median {1000 * statistics.median(passes):.1f} ms over {args.repeats} passes "
          f"({', '.join(f'{1000 * p:.1f}' for p in passes)})\n")
    print("| part | ms a step |\n|---|---:|")
    for label, seconds in totals.items():
        print(f"| {label} | {1000 * seconds / args.steps:.1f} |")
    print(f"| the timed pass's whole step | {1000 * timed_pass:.1f} |")


if __name__ == "__main__":
    main()
