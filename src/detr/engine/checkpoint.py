"""Checkpoints: plain tensors and Python values only, written atomically."""

from __future__ import annotations

import logging
import os
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without ever executing code from it (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line}") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no 'model' and 'config')")
    return payload
