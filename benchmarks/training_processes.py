"""Where a step of `detr train`'s processes goes on a CPU: loading, forward and backward, waiting.

Starts --processes training processes as `detr train` does (each pinned to its cores, jemalloc
preloaded where the system has it), trains the preset fitted to the data for --minutes with a
timer around each part of the loop, and prints the mean milliseconds a step of each part in
each process, after the first --skip steps:

- loading: the in-line loader's next batch;
- forward, loss, backward: the step up to the gradient average;
- waiting for the others: a barrier before the average (an extra small collective);
- gradient average: `GradientSync.finish` once all have arrived (allreduce, copies back);
- clipping, optimiser, EMA: the rest of the step;
- the loop's rest: the schedule, logging, progress.

    PYTHONPATH=src python benchmarks/training_processes.py --data data/general --minutes 2
    PYTHONPATH=src python benchmarks/training_processes.py --quick    # a short check that it runs

Not a test: run it on a quiet machine; runs of one command differ by a few percent.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.distributed as dist

from detr.commands.shared_flags import data_root
from detr.config import preset
from detr.data.fit import fit_with_settings
from detr.data.sources import explicit_split, training_splits
from detr.engine.local_processes import run_in_processes
from detr.engine.train import Trainer

PARTS = ("loading", "forward, loss, backward", "waiting for the others", "gradient average",
         "clipping, optimiser, EMA", "the loop's rest", "whole step")


def _timed_loop(trainer: Trainer, skip: int) -> dict[str, float]:
    """Train to the budget with each part timed; the mean seconds a step of each after `skip`."""
    times: dict[str, list[float]] = defaultdict(list)
    loader, finish, step = trainer.train_loader, trainer.sync.finish, trainer._train_step
    marks: dict[str, float] = {}
    ends: list[float] = []  # each step's end: the whole step is the time between ends

    class TimedLoader:
        def __len__(self) -> int:
            return len(loader)

        def __iter__(self):
            batches = iter(loader)
            while True:
                start = time.perf_counter()
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                times["loading"].append(time.perf_counter() - start)
                yield batch

    def timed_finish(*args):
        marks["arrived"] = time.perf_counter()
        dist.barrier()
        marks["all arrived"] = time.perf_counter()
        result = finish(*args)
        marks["averaged"] = time.perf_counter()
        return result

    def timed_step(micro_batches):
        start = time.perf_counter()
        result = step(micro_batches)
        end = time.perf_counter()
        times["forward, loss, backward"].append(marks["arrived"] - start)
        times["waiting for the others"].append(marks["all arrived"] - marks["arrived"])
        times["gradient average"].append(marks["averaged"] - marks["all arrived"])
        times["clipping, optimiser, EMA"].append(end - marks["averaged"])
        ends.append(end)
        return result

    trainer.train_loader, trainer.sync.finish, trainer._train_step = TimedLoader(), timed_finish, timed_step
    budget = trainer.config.train.time_budget_minutes
    started = time.monotonic()
    while not trainer._run_epoch(None, started, budget):
        pass
    if len(ends) < skip + 2:
        raise SystemExit(f"{len(ends)} steps in the budget: give more --minutes or a smaller --skip")
    # Step k's parts lie between the ends of steps k-1 and k.
    means = {part: sum(values[skip + 1:]) / len(values[skip + 1:]) for part, values in times.items()}
    means["whole step"] = (ends[-1] - ends[skip]) / (len(ends) - 1 - skip)
    means["the loop's rest"] = means["whole step"] - sum(means[p] for p in PARTS[:5])
    means["steps"] = len(ends)
    return means


def _process(args: argparse.Namespace) -> None:
    root = data_root(args.data)
    train, val = training_splits(explicit_split("train", None, None, root), explicit_split("val", None, None, root))
    config = preset(args.preset)
    fit_with_settings(config, train.records, args.settings)
    config.train.processes = args.processes
    config.train.time_budget_minutes = args.minutes
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, train, val, out, torch.device("cpu"), progress=False)
        means = _timed_loop(trainer, args.skip)
        gathered: list[dict[str, float] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, means)
    if dist.get_rank() == 0:
        print(f"\n{args.preset} on {root}, {args.processes} processes of batch {config.train.batch_size}, "
              f"{args.minutes} minutes: {int(means['steps'])} steps; ms a step, the first {args.skip} left out\n")
        print("| part | " + " | ".join(f"process {r}" for r in range(len(gathered))) + " |")
        print("|---|" + "---:|" * len(gathered))
        for part in PARTS:
            print(f"| {part} | " + " | ".join(f"{1000 * m[part]:.1f}" for m in gathered) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a dataset folder (default: the built-in dataset)")
    parser.add_argument("--preset", default="fast_fine")
    parser.add_argument("--set", nargs="*", default=[], dest="settings", help="config overrides, as detr train's")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--skip", type=int, default=50, help="first steps left out of the means")
    parser.add_argument("--quick", action="store_true", help="0.1 minutes, the first 5 steps left out")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.skip = 0.1, 5
    run_in_processes(_process, args, args.processes)


if __name__ == "__main__":
    main()
