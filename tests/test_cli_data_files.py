"""`detr train` and `detr eval` find data by --data or by --train-json/--val-json ... flags."""

import json

import pytest

from detr.cli import build_parser, main
from detr.commands.shared_flags import train_val_splits
from detr.data.sources import Split
from tests.conftest import save_tiny_checkpoint
from tests.data.tiny_coco import write_tiny_coco


@pytest.fixture
def roboflow(tmp_path):
    """A Roboflow COCO export: train/ and valid/, each with its images and _annotations.coco.json."""
    for folder in ("train", "valid"):
        write_tiny_coco(tmp_path / "rf" / folder, tmp_path / "rf" / folder / "_annotations.coco.json")
    return tmp_path / "rf"


def test_flags_replace_the_split_they_name(roboflow, tmp_path):
    write_tiny_coco(tmp_path / "mine", tmp_path / "mine.json")
    args = build_parser().parse_args(["train", "--data", str(roboflow), "--train-json", str(tmp_path / "mine.json"),
                                      "--train-images", str(tmp_path / "mine")])
    train, val = train_val_splits(args)
    assert train == Split(tmp_path / "mine", tmp_path / "mine.json")
    assert val == Split(roboflow / "valid", roboflow / "valid" / "_annotations.coco.json")
    both = ["--val-json", str(tmp_path / "mine.json"), "--val-images", str(tmp_path / "mine")]
    args = build_parser().parse_args(["train", "--train-json", str(tmp_path / "mine.json"),
                                      "--train-images", str(tmp_path / "mine"), *both])
    assert train_val_splits(args) == (train, train)  # no --data needed, nor built


def test_flag_errors_are_one_line(tmp_path, capsys):
    write_tiny_coco(tmp_path / "mine", tmp_path / "mine.json")
    assert main(["train", "--train-json", str(tmp_path / "mine.json")]) == 1
    assert "--train-json needs --train-images too" in capsys.readouterr().err
    assert main(["train", "--train-json", str(tmp_path / "mine.json"), "--train-images", str(tmp_path / "mine")]) == 1
    assert "no 'val' split: give --data D or --val-json and --val-images" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "train/_annotations.coco.json" in err and "annotations/train.json" in err


def test_eval_on_flags_equals_eval_on_the_dataset_folder(roboflow, tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt", ["dot"])
    common = ["eval", "--checkpoint", str(checkpoint), "--no-progress"]
    assert main([*common, "--data", str(roboflow), "--out", str(tmp_path / "a.json")]) == 0
    assert main([*common, "--val-json", str(roboflow / "valid" / "_annotations.coco.json"),
                 "--val-images", str(roboflow / "valid"), "--out", str(tmp_path / "b.json")]) == 0
    by_folder, by_flags = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert by_folder and by_folder == by_flags
    assert {r["image_id"] for r in by_folder} == {1, 2}
