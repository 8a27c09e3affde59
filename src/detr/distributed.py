"""Multi-process training under torchrun: process group, ranks, gathering.

torchrun (or `detr train` with train.processes > 1 on a CPU) sets RANK, LOCAL_RANK and
WORLD_SIZE; with them present, training joins the process group (NCCL on GPU, gloo on CPU).
Without them everything here answers as a single process.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


_before_share: tuple[set[int], int] | None = None  # this process's cores and threads before it took its share


def physical_cores(logical: list[int]) -> list[list[int]]:
    """`logical` CPUs grouped by the physical core they share (Linux's thread siblings; each CPU
    alone where that is not known), in order of their first CPU."""
    groups: dict[str, list[int]] = {}
    for cpu in logical:
        try:
            key = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
        except OSError:
            key = f"cpu{cpu}"
        groups.setdefault(key, []).append(cpu)
    return list(groups.values())


def usable_cores() -> list[list[int]]:
    """The physical cores this process may run on (its affinity, which a container or taskset
    narrows; all of the machine's where the OS has no affinity), each a list of its logical CPUs."""
    if hasattr(os, "sched_getaffinity"):
        return physical_cores(sorted(os.sched_getaffinity(0)))
    return physical_cores(list(range(os.cpu_count() or 1)))


def core_share(cores: list[list[int]], local_rank: int, local_world: int) -> list[list[int]]:
    """The physical cores (each a list of its logical CPUs) of local process `local_rank` of
    `local_world`: an equal contiguous slice, the remainder unused, so that no two processes of one
    machine compete for a core, nor two threads of one process for the halves of a core."""
    size = len(cores) // local_world
    return cores[local_rank * size:(local_rank + 1) * size]


def _take_core_share(local_rank: int, local_world: int) -> None:
    """Run this process on its share of the physical cores, a thread per core, pinned where the
    OS allows. Unpinned, 2 processes of one thread each ran a DDP step 10% slower on 2 cores (the
    OS moved them about); torchrun's default of one thread would idle the rest of a bigger CPU."""
    global _before_share
    if local_world <= 1:
        return
    cores = usable_cores()
    share = core_share(cores, local_rank, local_world)
    if not share:
        return
    _before_share = {cpu for core in cores for cpu in core}, torch.get_num_threads()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, [cpu for core in share for cpu in core])
    torch.set_num_threads(len(share))


def init_from_environment(device: torch.device) -> torch.device:
    """Join the process group torchrun describes; returns this process's device. On a CPU each
    of the machine's processes is pinned to its share of the cores."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        _take_core_share(local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.get_rank() != 0:
        logging.getLogger("detr").setLevel(logging.WARNING)  # rank 0 tells the story
    return device


def gather_to_main(value: Any) -> list[Any] | None:
    """Every process's `value` on rank 0 (in rank order); None elsewhere."""
    if not is_distributed():
        return [value]
    gathered = [None] * world_size() if is_main() else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def leave_process_group() -> None:
    """Leave the group; a process pinned to a share of the cores gets them all back (rank 0
    evaluates and draws alone after training)."""
    global _before_share
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
    if _before_share is not None:
        cores, threads = _before_share
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cores)
        torch.set_num_threads(threads)
        _before_share = None
