"""`detr train` killed with SIGKILL, mid-epoch or mid-save, resumes to the bits of an uninterrupted run."""

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from detr.cli import main
from detr.engine.checkpoint import load_checkpoint
from detr.engine.train import Trainer
from tests.engine.test_exact_resume import TINY

ROOT = Path(__file__).resolve().parents[2]
RUN = ["--epochs", "2", "--workers", "0", *TINY]  # 3 steps an epoch, dropout on: 6 steps


def _args(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), *RUN, *extra]


def _start(data, out, **hooks) -> subprocess.Popen:
    """`detr train` in a process of its own, with the test hooks of tests/engine/hooked_cli.py."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           # the same intra-op thread count as this process, so that its sums round the same
           "OMP_NUM_THREADS": str(torch.get_num_threads()), **{f"DETR_TEST_{k}": str(v) for k, v in hooks.items()}}
    return subprocess.Popen([sys.executable, "-m", "tests.engine.hooked_cli", *_args(data, out)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _assert_same_tensors(got, expected, where=""):
    """Every tensor of two nested checkpoint structures bit-identical, every other value equal."""
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), where
        for key in expected:
            _assert_same_tensors(got[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), where
        for index, (a, b) in enumerate(zip(got, expected)):
            _assert_same_tensors(a, b, f"{where}/{index}")
    elif isinstance(expected, torch.Tensor):
        assert torch.equal(got, expected), where
    else:
        assert got == expected, where


def _assert_ends_like(path, straight):
    final = load_checkpoint(path)
    assert (final["epoch"], final["step"]) == (2, 6)
    for part in ("model", "optimizer", "scheduler"):
        _assert_same_tensors(final[part], straight[part], part)


@contextlib.contextmanager
def _recording_steps():
    """Each optimiser step a run in this process trains: its number as the run counts it, and
    the image ids it learns from, so that a resume that re-trains or skips data shows."""
    steps = []
    original = Trainer._train_step

    def recording(self, micro_batches):
        images = [int(t["image_id"]) for _, _, targets in micro_batches for t in targets]
        steps.append((self.step + 1, images))
        return original(self, micro_batches)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "_train_step", recording)
        yield steps


def _evaluated_steps(out):
    return [record["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
            if "val_AP" in (record := json.loads(line))]


@pytest.fixture(scope="module")
def straight(tiny_data, tmp_path_factory):
    """The uninterrupted run's last.pt and the steps it trained."""
    out = tmp_path_factory.mktemp("straight")
    with _recording_steps() as steps:
        assert main(_args(tiny_data, out)) == 0
    assert [number for number, _ in steps] == list(range(1, 7)) and all(images for _, images in steps)
    return load_checkpoint(out / "last.pt"), steps


def _assert_resumes_after(saved, straight, data, out):
    """Resumes the run in `out` from `saved`: it trains the straight run's steps after the
    checkpoint, with their images, and none before it; and ends with the same bits."""
    final, steps = straight
    with _recording_steps() as resumed:
        assert main([*_args(data, out), "--resume", str(out / "last.pt")]) == 0
    assert resumed == steps[saved["step"]:]
    _assert_ends_like(out / "last.pt", final)


def test_killed_mid_epoch_resumes_bit_identical(straight, tiny_data, tmp_path):
    """Proves: a SIGKILL between two steps loses only the unsaved steps; the saved epoch resumes to the same bits."""
    out = tmp_path / "run"
    process = _start(tiny_data, out, PAUSE_AFTER_STEP=4)  # the middle of the second epoch
    deadline = time.monotonic() + 240
    while not (out / "paused").exists():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run never reached step 4"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    process.stderr.close()
    saved = load_checkpoint(out / "last.pt")
    assert (saved["epoch"], saved["batches_done"], saved["step"]) == (1, 0, 3)  # the end of epoch 1

    _assert_resumes_after(saved, straight, tiny_data, out)
    assert _evaluated_steps(out) == [3, 6]


def test_killed_while_writing_last_pt_keeps_the_previous_one_and_resumes(straight, tiny_data, tmp_path, caplog):
    """Proves: a SIGKILL between the temp-file write and the rename leaves the old last.pt whole and
    loadable; the next start removes the temp file and drops the lost steps' log records."""
    out = tmp_path / "run"
    process = _start(tiny_data, out, KILL_IN_SAVE=2)  # the save at the end of epoch 2
    _, errors = process.communicate(timeout=240)
    assert process.returncode == -signal.SIGKILL, errors[-3000:]
    leftovers = list(out.glob("last.pt.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the kill landed mid-save
    saved = load_checkpoint(out / "last.pt")
    assert (saved["epoch"], saved["step"]) == (1, 3)
    assert _evaluated_steps(out) == [3, 6]  # epoch 2 was evaluated and logged before the kill

    with caplog.at_level(logging.WARNING):
        _assert_resumes_after(saved, straight, tiny_data, out)
    assert leftovers[0].name in caplog.text and not list(out.glob("*.tmp"))
    assert _evaluated_steps(out) == [3, 6]  # epoch 2's lost record replaced, not doubled
