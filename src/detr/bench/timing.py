"""Timing a callable the same way in every benchmark."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Hashable

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


# Cells are timed in this many rounds, each round visiting every cell in a rotated order, so that a
# burst of the machine's noise spreads over the cells instead of landing on one: one model's onnxruntime
# batch 1 timed in two table rows, one cell after another, read 16.9 and 11.2 ms on a 2-vCPU VM.
ROUNDS = 5


def interleaved_ms(cells: dict[Hashable, tuple[Callable[[], object], int]], runs: int) -> dict[Hashable, float]:
    """{key: (call, batch)} -> {key: median milliseconds per image over `runs` calls}, after two
    warm-up calls each, the calls spread over ROUNDS rounds through all the cells, each visit
    starting with one untimed call."""
    keys = list(cells)
    times: dict[Hashable, list[float]] = {key: [] for key in keys}
    for key in keys:
        for _ in range(2):
            cells[key][0]()
    for round_index in range(ROUNDS):
        share = runs // ROUNDS + (round_index < runs % ROUNDS)
        for key in keys[round_index % len(keys):] + keys[:round_index % len(keys)]:
            call, batch = cells[key]
            call()  # untimed: the caches still hold the previous cell's model
            for _ in range(share):
                start = time.perf_counter()
                call()
                times[key].append(1000 * (time.perf_counter() - start) / batch)
    return {key: statistics.median(values) for key, values in times.items()}
