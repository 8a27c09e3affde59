"""Checkpoints: plain tensors and Python values only, written atomically."""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# write_atomic's temp files are named <target>.<random>.tmp, beside the target.
TEMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, worded to say which file and why."""


def write_atomic(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(temp_path) in path's folder, then rename over `path`.

    A crash mid-write leaves the previous file intact; a failure leaves no temp
    file behind (a killed process may: `remove_stale_temp_files` clears it).
    The temp file is flushed to disk before the rename and the folder after
    it, so that a power cut cannot leave `path` naming an empty file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TEMP_SUFFIX)
    os.close(handle)
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync(path: str | Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; Windows cannot open a folder)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:  # some file systems refuse fsync on a folder; the rename still happened
        pass
    finally:
        os.close(handle)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files a killed writer left in `folder` (call before writing there again)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(TEMP_SUFFIX)
             and (folder / p.name.rsplit(".", 2)[0]).suffix in (".pt", ".json", ".jsonl", ".safetensors")]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.warning("removed %d unfinished checkpoint file(s) left by an interrupted run in %s: %s",
                    len(stale), folder, ", ".join(p.name for p in stale))
    return stale


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    """torch.save through write_atomic."""
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def read_torch_file(path: str | Path, error: type[CheckpointError] = CheckpointError, what: str = "",
                    map_location: str | torch.device = "cpu") -> Any:
    """torch.load that never runs code from the file (weights_only=True): tensors and plain values
    only, plus argparse.Namespace, which the official DETR checkpoints pickle as `args`. Any
    failure is one `error` line: "cannot read {what}{path}: why"."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as failure:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise error(f"cannot read {what}{path}: {_why_unreadable(failure)}") from None


def _why_unreadable(failure: Exception) -> str:
    """The first line of why torch.load failed, saying so when the file would run code."""
    text = str(failure).strip()
    first_line = text.splitlines()[0] if text else type(failure).__name__
    if not isinstance(failure, pickle.UnpicklingError):
        return f"not a PyTorch weights file ({type(failure).__name__}: {first_line})"
    if "Weights only load failed" not in text:
        return first_line
    lines = [line.strip() for line in text.splitlines()]
    culprit = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), "")
    if "GLOBAL" in culprit:  # a reference to a Python callable or class: the way pickles run code
        return (f"refusing to load it: it pickles Python objects beyond tensors, plain values and "
                f"argparse.Namespace, and unpickling them could run code ({culprit})")
    return f"not a PyTorch weights file, or not one that is safe to unpickle ({culprit})"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint of this project without ever executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    payload = read_torch_file(path, CheckpointError, "checkpoint ", map_location)
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no 'model' and 'config')")
    return payload
