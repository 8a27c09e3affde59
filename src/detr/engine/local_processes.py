"""Data-parallel training in several processes of one CPU, started by `detr train` itself.

On a CPU the default's small batches leave cores idle: one process of batch 2 ran a step
only 1.1x faster on 2 threads than on 1 (BENCHMARKS.md). N processes, each pinned to its
share of the cores (distributed.py), train on N batches at once and average their gradients,
as torchrun's processes do; `detr train` starts them so that a user needs no launcher.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Callable

import torch
import torch.multiprocessing as mp

from detr.distributed import core_share, usable_cores
from detr.engine.allocator import find_jemalloc, preloaded_for_new_processes
from detr.engine.train import TrainingError

log = logging.getLogger("detr")


def available_cores() -> int:
    """How many physical cores this process may run on (two threads of one core count once)."""
    return len(usable_cores())


def process_count(requested: int, device: torch.device) -> int:
    """How many processes `detr train` starts for train.processes = `requested`: at most one per
    core, one on a GPU (several GPUs take torchrun) and one inside a torchrun process group."""
    if requested < 1:
        raise ValueError(f"train.processes is a count of processes, at least 1, not {requested}")
    if requested == 1 or "WORLD_SIZE" in os.environ:
        return 1
    if device.type != "cpu":
        log.info("one process: train.processes=%d starts CPU processes; for several GPUs use torchrun "
                 "(README, \"Several cores, GPUs or machines\")", requested)
        return 1
    cores = available_cores()
    if cores < requested:
        log.info("%d process%s, one per core: train.processes=%d asks for more than this machine's %d",
                 cores, "" if cores == 1 else "es", requested, cores)
    return min(requested, cores)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a process group's rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _process(local_rank: int, world: int, port: int, function: Callable[[Any], Any], argument: Any) -> None:
    """One process of the group: torchrun's environment, then `function(argument)`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank),
                      LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # a spawned process starts unconfigured
    if local_rank != 0:
        log.setLevel(logging.WARNING)  # rank 0 tells the story, from its first line
    function(argument)


def run_in_processes(function: Callable[[Any], Any], argument: Any, count: int) -> None:
    """`function(argument)` in `count` new processes joined as one gloo group on this machine;
    returns when all have ended. A process's error is raised here as a TrainingError (the others
    are stopped), with its own message."""
    each = len(core_share(usable_cores(), 0, count))  # the share each process pins itself to
    try:
        with preloaded_for_new_processes(find_jemalloc()) as allocator:
            log.info("training in %d processes on this CPU, %d core%s each; memory allocator: %s", count, each,
                     "" if each == 1 else "s", allocator or "glibc's malloc (libjemalloc2 gives more steps a minute)")
            mp.start_processes(_process, args=(count, free_port(), function, argument), nprocs=count,
                               start_method="spawn")
    except mp.ProcessRaisedException as error:
        raise TrainingError(_last_words(str(error))) from None
    except mp.ProcessExitedException as error:
        raise TrainingError(f"training process {error.error_index} ended abruptly (exit code {error.exit_code}); "
                            "the others were stopped") from None


def _last_words(trace: str) -> str:
    """The message of the error a process raised: the last line of its traceback, without the type."""
    last = trace.strip().splitlines()[-1]
    return last.split(": ", 1)[-1] if ": " in last else last
