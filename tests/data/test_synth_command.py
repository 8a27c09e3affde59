import json

from detr.cli import main
from detr.config import SynthConfig
from detr.data.synthetic import write_dataset
from tests.data.synthetic_checks import file_bytes


def test_default_kind_writes_the_builtin_dataset_as_before(tmp_path):
    assert main(["synth", "--out", str(tmp_path / "cli"), "--train-images", "3", "--val-images", "2"]) == 0
    direct = write_dataset(tmp_path / "direct", SynthConfig(train_images=3, val_images=2))
    assert file_bytes(tmp_path / "cli") == file_bytes(direct)


def test_other_kinds_take_the_overrides_and_reject_crowd(tmp_path, capsys):
    assert main(["synth", "--kind", "dense", "--out", str(tmp_path), "--train-images", "2", "--val-images", "1",
                 "--seed", "5"]) == 0
    stamp = json.loads((tmp_path / "synth.json").read_text())
    assert stamp["kind"] == "dense" and stamp["config"]["seed"] == 5 and stamp["config"]["min_objects"] == 15
    assert len(json.loads((tmp_path / "val" / "annotations.json").read_text())["images"]) == 1
    assert main(["synth", "--kind", "general", "--crowd", "--out", str(tmp_path / "g")]) == 1
    assert "--crowd is for --kind builtin" in capsys.readouterr().err
