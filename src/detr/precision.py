"""Mixed precision: one switch, "fp32" or "bf16", for training, evaluation and inference."""

from __future__ import annotations

import torch

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    return precision


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast on `device` (matmuls and convolutions in bf16, reductions and our
    losses, matching and post-processing in fp32), or a disabled one for fp32."""
    check_precision(precision)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` is a CPU with AMX tiles (Intel Xeon from Sapphire Rapids on), whose matrix
    units multiply bf16 natively; elsewhere on a CPU bf16 is emulated and slower than fp32."""
    has_tiles = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private; absent: assume none
    return device.type == "cpu" and bool(has_tiles and has_tiles())
