"""Multi-process training under torchrun: process group, ranks, gathering.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; with them present, training
joins the process group (NCCL on GPU, gloo on CPU). Without them everything
here answers as a single process.
"""

from __future__ import annotations

import logging
import os
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


def init_from_environment(device: torch.device) -> torch.device:
    """Join the process group torchrun describes; returns this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
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
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
