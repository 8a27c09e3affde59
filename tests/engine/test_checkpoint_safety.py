"""Crash-safe checkpoint writing, and resumes refused clearly when the checkpoint cannot continue the run."""

import logging
import os
import re

import pytest
import torch

from detr.cli import main
from detr.config import preset
from detr.data.sources import find_split
from detr.engine import checkpoint
from detr.engine.checkpoint import load_checkpoint, remove_stale_temp_files, save_atomic
from detr.engine.train import Trainer
from tests.conftest import tiny_model_config


def test_write_atomic_flushes_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(source, destination):
        events.append(("replace", str(source), str(destination)))
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "c.pt"
    save_atomic({"model": {"w": torch.ones(2)}, "config": {}}, path)
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    temp = events[1][1]
    assert events[0][1] == temp and events[1][2] == str(path)  # the temp file's data, then the rename
    assert events[2][1] == str(tmp_path)  # then the folder entry
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))


def test_stale_temp_files_of_a_killed_writer_are_removed_once_and_logged(tmp_path, caplog):
    stale = [tmp_path / "last.pt.k3j_x9a1.tmp", tmp_path / "best.pt.0a1b2c3d.tmp", tmp_path / "metrics.jsonl.x1y2.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    kept = [tmp_path / "notes.tmp", tmp_path / "last.pt"]  # not ours, and finished files
    for path in kept:
        path.write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        removed = remove_stale_temp_files(tmp_path)
        assert remove_stale_temp_files(tmp_path) == []
    assert sorted(removed) == sorted(stale) and not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    warnings = [r.getMessage() for r in caplog.records if "unfinished" in r.getMessage()]
    assert len(warnings) == 1 and "last.pt.k3j_x9a1.tmp" in warnings[0]


def test_a_new_start_in_the_run_folder_clears_stale_temp_files(tiny_data, tmp_path):
    """A killed save leaves its temp file; the next training start in that folder removes it."""
    config = preset("small")
    config.model = tiny_model_config(num_classes=4, num_queries=10)
    config.train.batch_size, config.train.epochs, config.train.eval_every = 4, 1, 5
    trainer = Trainer(config, find_split(tiny_data, "train"), find_split(tiny_data, "val"), tmp_path,
                      progress=False)

    child = os.fork()
    if child == 0:  # a process killed in the middle of writing its checkpoint
        checkpoint.write_atomic(tmp_path / "last.pt", lambda tmp: (open(tmp, "wb").write(b"partial"), os._exit(0)))
    os.waitpid(child, 0)
    leftovers = list(tmp_path.glob("last.pt.*.tmp"))
    assert len(leftovers) == 1
    trainer.fit()
    assert not list(tmp_path.glob("*.tmp")) and (tmp_path / "last.pt").exists()


def test_a_resume_drops_the_log_records_of_steps_after_its_checkpoint(tiny_data, tmp_path):
    """A run killed after logging steps 4-6 but saving step 3 (and mid-line): the resume keeps steps <= 3."""
    config = preset("small")
    config.model = tiny_model_config(num_classes=4, num_queries=10)
    trainer = Trainer(config, find_split(tiny_data, "train"), find_split(tiny_data, "val"), tmp_path,
                      progress=False)
    trainer.step = 3
    trainer.save("last.pt")
    records = ['{"step": 2, "loss": 1.0}', '{"step": 3, "val_AP": 0.1}', '{"step": 6, "val_AP": 0.2}', '{"st']
    (tmp_path / "metrics.jsonl").write_text("\n".join(records))
    trainer.resume(tmp_path / "last.pt")
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == records[:2]


@pytest.fixture(scope="module")
def one_epoch_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--epochs", "1", "--batch-size", "4",
                 "--no-progress", "--pictures", "0"]) == 0
    return out / "last.pt"


def _edited(source, tmp_path, edit):
    payload = load_checkpoint(source)
    edit(payload)
    save_atomic(payload, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


def _drop(*keys):
    return lambda payload: [payload.pop(k) for k in keys]


def _categories(ids, names):
    return lambda payload: payload.update(categories={"ids": ids, "names": names})


def _widen_box_head(payload):
    payload["model"]["bbox_embed.layers.0.weight"] = torch.zeros(
        99, payload["model"]["bbox_embed.layers.0.weight"].shape[1])


@pytest.mark.parametrize("edit, message", [
    (_drop("optimizer", "scheduler", "step"), "holds weights only .* use --init|start a new run .* --init"),
    (_categories([1, 2, 3], ["circle", "square", "triangle"]),
     r"trained on other data \(3 classes, ids \[1, 2, 3\]; this dataset: 4 classes"),
    (_categories([1, 2, 3, 9], ["circle", "square", "triangle", "cross"]),
     r"other data \(4 classes, ids \[1, 2, 3, 9\]; this dataset: 4 classes, ids \[1, 2, 3, 4\]\)"),
    (_widen_box_head, "holds another model .*bbox_embed.layers.0.weight.* same preset|preset and --set"),
])
def test_resume_refuses_a_checkpoint_that_cannot_continue_this_run(one_epoch_run, tiny_data, tmp_path, capsys,
                                                                   edit, message):
    bad = _edited(one_epoch_run, tmp_path, edit)
    code = main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "again"), "--epochs", "2",
                 "--batch-size", "4", "--no-progress", "--resume", str(bad)])
    error = capsys.readouterr().err.strip()
    assert code == 1 and len(error.splitlines()) == 1, error
    assert str(bad) in error
    assert re.search(message, error), error
