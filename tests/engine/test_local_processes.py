"""`detr train` starting its own data-parallel processes on a CPU (train.processes)."""

import importlib.util
import os

import pytest
import torch
import torch.distributed as dist

from detr.cli import main
from detr.data.synthetic import SynthConfig, write_dataset
from detr.distributed import core_share, physical_cores
from detr.engine import local_processes
from detr.engine.checkpoint import load_checkpoint
from detr.engine.local_processes import process_count, run_in_processes
from detr.engine.train import TrainingError

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available() and importlib.util.find_spec("torch.distributed.run")),
    reason="needs torch.distributed with the gloo backend")
CPU = torch.device("cpu")


def test_each_process_takes_an_equal_contiguous_slice_of_the_physical_cores():
    cores = [[0], [1], [2], [3], [4], [5], [6]]
    assert [core_share(cores, rank, 3) for rank in range(3)] == [[[0], [1]], [[2], [3]], [[4], [5]]]
    siblings = [[0, 4], [1, 5], [2, 6], [3, 7]]  # two logical CPUs a core, numbered as Linux often does
    assert [core_share(siblings, rank, 2) for rank in range(2)] == [[[0, 4], [1, 5]], [[2, 6], [3, 7]]]
    assert core_share(cores, 0, 1) == cores


def test_logical_cpus_are_grouped_by_physical_core():
    """Every CPU of this machine in exactly one group, in order; a CPU the OS does not describe
    (a number beyond this machine's) is a core of its own."""
    logical = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    groups = physical_cores(logical + [100_000])
    assert sorted(cpu for group in groups for cpu in group) == logical + [100_000]
    assert groups[-1] == [100_000] and [g[0] for g in groups] == sorted(g[0] for g in groups)


def test_process_count_is_capped_at_the_cores_and_is_one_on_a_gpu_or_inside_a_group(monkeypatch, caplog):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(local_processes, "available_cores", lambda: 3)
    assert process_count(1, CPU) == 1
    assert process_count(2, CPU) == 2
    with caplog.at_level("INFO", logger="detr"):
        assert process_count(8, CPU) == 3
        assert process_count(2, torch.device("cuda")) == 1
    assert "asks for more than this machine's 3" in caplog.text and "torchrun" in caplog.text
    monkeypatch.setenv("WORLD_SIZE", "2")  # already one of a group (torchrun): no more processes
    assert process_count(2, CPU) == 1
    with pytest.raises(ValueError, match="at least 1"):
        process_count(0, CPU)


def _fail(message: str) -> None:
    raise TrainingError(message)


@needs_gloo
def test_a_process_error_reaches_the_caller_with_its_own_message():
    with pytest.raises(TrainingError, match=r"^the data ran out$"):
        run_in_processes(_fail, "the data ran out", 2)


@needs_gloo
def test_two_processes_train_evaluate_once_and_save_one_run(tmp_path, monkeypatch, capfd):
    """Proves: `detr train --processes 2` trains in two processes (each step holds two batches, one
    per process: 4 images an epoch take one step of 2 x 2) and reports once, as one run."""
    monkeypatch.setattr(local_processes, "available_cores", lambda: 2)
    data = write_dataset(tmp_path / "synth", SynthConfig(train_images=4, val_images=2))
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--processes", "2",
                 "--batch-size", "2", "--workers", "0", "--no-progress", "--pictures", "0", "--set",
                 "model.hidden_dim=32", "model.num_heads=4", "model.feedforward_dim=64", "model.encoder_layers=1",
                 "model.decoder_layers=1", "model.num_queries=8"]) == 0
    captured = capfd.readouterr()
    assert captured.out.count("COCO evaluation of") == 1, captured.err[-3000:]
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == 1 and state["images"] == 4  # both processes' batches count
    assert "trained on 4 images in" in captured.err + captured.out
