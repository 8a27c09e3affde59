"""`detr` with test-only fault hooks, for the subprocess tests: `python -m tests.engine.hooked_cli train ...`.

Each hook is off unless its environment variable is set; the library itself has none.
  DETR_TEST_PAUSE_AFTER_STEP=k  after optimiser step k, write "<out>/paused" and sleep (to be killed there)
  DETR_TEST_KILL_IN_SAVE=n      SIGKILL this process inside the n-th write of last.pt, after the temp
                                file is written and flushed and before the rename
  DETR_TEST_NAN_RANK=r, DETR_TEST_NAN_FROM_STEP=k   process r's loss is NaN from optimiser step k on
  DETR_TEST_RANK0_CLOCK=1       rank 0's clock reads one minute later at every look, the others' the real
                                time: a --minutes budget then ends the run at a known step, by rank 0's clock
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from detr import distributed
from detr.cli import main
from detr.engine import checkpoint, local_processes, train

_env = os.environ.get


def _pause_after(step: int) -> None:
    original = train.Trainer._train_step

    def pausing(self, micro_batches):
        if self.step == step:  # step k is done, its successor not begun
            (self.out_dir / "paused").write_text(str(step))
            time.sleep(600)
        return original(self, micro_batches)

    train.Trainer._train_step = pausing


def _kill_in_save(nth: int) -> None:
    original, seen = checkpoint._fsync, []

    def fsync_then_die(path):
        original(path)
        if Path(path).name.startswith("last.pt."):
            seen.append(path)
            if len(seen) == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    checkpoint._fsync = fsync_then_die


def _nan_on(rank: int, from_step: int) -> None:
    original = train.Trainer._train_step

    def poisoning(self, micro_batches):
        if distributed.rank() == rank and self.step + 1 >= from_step and "forward" not in vars(self.criterion):
            forward = self.criterion.forward

            def nan_loss(*args, **kwargs):
                losses = forward(*args, **kwargs)
                losses["loss"] = losses["loss"] * float("nan")
                return losses

            self.criterion.forward = nan_loss
        return original(self, micro_batches)

    train.Trainer._train_step = poisoning


def _rank0_clock() -> None:
    looks = []

    def monotonic() -> float:
        if distributed.rank() != 0:
            return time.monotonic()
        looks.append(None)
        return 60.0 * len(looks)

    train.time = SimpleNamespace(monotonic=monotonic)


if __name__ == "__main__":
    # The hooks live in this process, so it trains alone: the default preset would start one
    # process per core (train.processes), fresh ones without the hooks.
    local_processes.available_cores = lambda: 1
    if _env("DETR_TEST_PAUSE_AFTER_STEP"):
        _pause_after(int(_env("DETR_TEST_PAUSE_AFTER_STEP")))
    if _env("DETR_TEST_KILL_IN_SAVE"):
        _kill_in_save(int(_env("DETR_TEST_KILL_IN_SAVE")))
    if _env("DETR_TEST_NAN_RANK"):
        _nan_on(int(_env("DETR_TEST_NAN_RANK")), int(_env("DETR_TEST_NAN_FROM_STEP", "1")))
    if _env("DETR_TEST_RANK0_CLOCK"):
        _rank0_clock()
    sys.exit(main())
