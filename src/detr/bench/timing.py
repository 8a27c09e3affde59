"""Timing a callable the same way in every benchmark."""

from __future__ import annotations

import statistics
import time

import torch


def median_time(call, runs: int, device: torch.device, warmup: int = 1) -> tuple[float, int]:
    """(median seconds of `runs` calls after `warmup` untimed ones, peak CUDA bytes allocated
    during the timed calls or 0 off CUDA). Waits for the device after each call."""
    for _ in range(warmup):
        call()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    return statistics.median(times), peak
