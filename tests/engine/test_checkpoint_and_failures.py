import pickle

import pytest
import torch

from detr.config import preset
from detr.data.sources import find_split
from detr.engine.checkpoint import CheckpointError, load_checkpoint, save_atomic
from detr.engine.train import Trainer, TrainingError, init_from
from detr.model import build_model
from tests.conftest import tiny_model_config


def _tiny_trainer(tiny_data, out, data=None, **train):
    config = preset("small")
    for key, value in (data or {}).items():
        setattr(config.data, key, value)
    config.model = tiny_model_config(num_classes=4, num_queries=10)
    config.train.batch_size, config.train.num_workers, config.train.epochs = 4, 0, 2
    for key, value in train.items():
        setattr(config.train, key, value)
    return Trainer(config, find_split(tiny_data, "train"), find_split(tiny_data, "val"), out, progress=False)


def test_a_setting_that_would_do_nothing_is_refused_before_training(tiny_data, tmp_path):
    config = preset("small")
    config.loss.dense_proposals = True  # `small` has no query selection whose proposals it would train
    with pytest.raises(TrainingError, match="loss.dense_proposals .* model.queries='selected'"):
        Trainer(config, find_split(tiny_data, "train"), find_split(tiny_data, "val"), tmp_path, progress=False)


def test_non_finite_loss_stops_clearly_and_keeps_the_last_checkpoint(tiny_data, tmp_path, monkeypatch):
    trainer = _tiny_trainer(tiny_data, tmp_path, epochs=1)
    trainer.fit()
    before = (tmp_path / "last.pt").read_bytes()
    trainer.config.train.epochs = 2
    original = trainer.criterion.forward

    def poisoned(outputs, targets, normalisers=None):
        losses = original(outputs, targets, normalisers)
        losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(trainer.criterion, "forward", poisoned)
    with pytest.raises(TrainingError, match="loss became nan at epoch 1 .* last good checkpoint"):
        trainer.fit()
    assert (tmp_path / "last.pt").read_bytes() == before


def test_atomic_save_leaves_previous_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_atomic({"model": {"w": torch.ones(2)}, "config": {}}, path)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_atomic({"model": {"w": torch.zeros(2)}, "config": {}}, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


class _Payload:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(_Payload.marker),))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    _Payload.marker = str(tmp_path / "code-ran")
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"model": _Payload(), "config": {}}, handle)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "code-ran").exists()


def test_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.ones(1)}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_checkpoint(tmp_path / "w.pt")


def test_init_from_reinitialises_only_a_resized_class_head():
    source = build_model(tiny_model_config(num_classes=7))
    target = build_model(tiny_model_config(num_classes=3))
    fresh = init_from(target, source.state_dict())
    assert fresh == ["class_embed.weight", "class_embed.bias"]
    assert torch.equal(target.queries.embed.weight, source.queries.embed.weight)
    wrong = build_model(tiny_model_config(num_classes=3, hidden_dim=16, num_heads=4))
    with pytest.raises(TrainingError, match="do not fit this model"):
        init_from(wrong, source.state_dict())


def test_resuming_a_run_whose_fine_level_kept_the_unread_level_embedding_says_to_start_from_it(tiny_data, tmp_path):
    trainer = _tiny_trainer(tiny_data, tmp_path / "run")
    trainer.config.model = tiny_model_config(num_classes=4, num_queries=10, queries="selected", fine_level=True,
                                             decoder_attention="deformable")
    trainer = Trainer(trainer.config, find_split(tiny_data, "train"), find_split(tiny_data, "val"), tmp_path / "run",
                      progress=False)
    state = trainer.state()
    state["model"]["fine_level.level_embed"] = torch.zeros(32)  # as the previous default wrote it
    save_atomic(state, tmp_path / "old.pt")
    with pytest.raises(TrainingError, match="level embedding .* --init"):
        trainer.resume(tmp_path / "old.pt")
    assert init_from(trainer.model, state["model"]) == []  # what the message offers works
