"""`detr train` on a damaged dataset: one line naming the file, the record and the damage,
exit status 1, no traceback, and nothing written, whatever the damage."""

import json
from pathlib import Path

import pytest

from detr.cli import main
from detr.data.sources import Split, training_splits
from tests.conftest import save_tiny_checkpoint
from tests.data.tiny_coco import write_coco, write_tiny_coco


def _clean(root: Path) -> dict[str, Split]:
    """Two undamaged splits: two 32x32 images each, one box of category 1 ("dot") on each."""
    splits = {name: Split(root / name, root / f"{name}.json") for name in ("train", "val")}
    for split in splits.values():
        write_tiny_coco(split.images, split.annotations)
    return splits


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _train(tmp_path: Path, splits: dict[str, Split], capsys) -> str:
    """Runs `detr train` as a user would; returns its error line after checking that it is the
    only thing said, that no traceback came with it and that no run folder was begun."""
    out = tmp_path / "run"
    files = [f"--{name}-{kind}={path}" for name, split in splits.items()
             for kind, path in (("json", split.annotations), ("images", split.images))]
    assert main(["train", *files, "--out", str(out), "--epochs", "1", "--device", "cpu", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and not out.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("detr train: error: ")
    return lines[0]


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _text_file_named_jpg(split: Split) -> None:
    _edit(split.annotations, lambda d: d["images"][0].update(file_name="0.jpg"))
    (split.images / "0.jpg").write_text("<html>404 not found</html>")


def _two_text_files_named_jpg(split: Split) -> None:
    _text_file_named_jpg(split)
    _edit(split.annotations, lambda d: d["images"][1].update(file_name="1.jpg"))
    (split.images / "1.jpg").write_text("")


def _replace_image(split: Split, index: int, value) -> None:
    _edit(split.annotations, lambda d: d["images"].__setitem__(index, value))


def _a_class_of_its_own(split: Split) -> None:
    """Every box of the split in a category (2, "ring") that the other split does not have."""
    def change(data):
        data["categories"] = [{"id": 2, "name": "ring"}]
        for annotation in data["annotations"]:
            annotation["category_id"] = 2
    _edit(split.annotations, change)


def _set_annotation(**fields):
    return lambda split: _edit(split.annotations, lambda d: d["annotations"][0].update(fields))


def _set_image(**fields):
    return lambda split: _edit(split.annotations, lambda d: d["images"][0].update(fields))


def _drop(kind: str, key: str):
    return lambda split: _edit(split.annotations, lambda d: d[kind][0].pop(key))


# (split damaged, damage, what the line must say after "detr train: error: <the split's json>: ")
DAMAGE = {
    "annotation without bbox": ("train", _drop("annotations", "bbox"),
                                "annotation 1 lacks ['bbox']; each annotation needs 'image_id', 'category_id', "
                                "'bbox'"),
    "bbox of 3 numbers": ("train", _set_annotation(bbox=[4, 4, 10]),
                          "annotation 1 (image 1) has bbox [4, 4, 10]; a COCO bbox is 4 finite numbers "
                          "[x, y, width, height]"),
    "bbox of strings": ("train", _set_annotation(bbox=["4", "4", "10", "12"]),
                        "annotation 1 (image 1) has bbox ['4', '4', '10', '12']; a COCO bbox is 4 finite numbers"),
    "bbox not a number": ("val", _set_annotation(bbox=[4, 4, float("nan"), 12]),
                          "annotation 1 (image 1) has bbox [4, 4, nan, 12]; a COCO bbox is 4 finite numbers"),
    "negative bbox size": ("train", _set_annotation(bbox=[14, 14, -10, 4]),
                           "annotation 1 (image 1) has negative width or height in bbox [14, 14, -10, 4]; a COCO "
                           "bbox is [x, y, width, height], not two corners"),
    "top-level list": ("train", lambda s: s.annotations.write_text("[]"),
                       "annotation file must hold a JSON object with 'images', 'annotations' and 'categories', "
                       "not a list"),
    "truncated json": ("val", lambda s: _truncate(s.annotations), "annotation file is not valid JSON ("),
    "empty json": ("train", lambda s: s.annotations.write_text("\n"),
                   "annotation file is empty; export or download the annotations again"),
    "not UTF-8": ("train", lambda s: s.annotations.write_bytes('{"images": "é"}'.encode("latin-1")),
                  "annotation file is not UTF-8 text; save it as UTF-8 JSON"),
    "no annotations list": ("train", lambda s: _edit(s.annotations, lambda d: d.pop("annotations")),
                            "annotation file has no 'annotations' list (none); a COCO file lists 'images', "
                            "'annotations', 'categories'"),
    "missing width": ("train", _drop("images", "width"),
                      "image 1 lacks ['width']; each image needs 'id', 'file_name', 'width', 'height'"),
    "non-numeric height": ("val", _set_image(height="32px"),
                           "image 1 (0.png) has width 32 and height '32px'; both must be positive numbers"),
    "zero width": ("train", _set_image(width=0), "image 1 (0.png) has width 0 and height 32; both must be positive"),
    "image id not an integer": ("train", _set_image(id="one"),
                                "image number 1 ('0.png') has id 'one'; image ids are integers"),
    "image record not an object": ("train", lambda s: _replace_image(s, 0, "0.png"),
                                   "image number 1 in the list is string '0.png', not an object"),
    "duplicate image id": ("train", lambda s: _edit(s.annotations, lambda d: d["images"][1].update(id=1)),
                           "image id 1 is used twice (0.png and 1.png); image ids must be unique"),
    "duplicate annotation id": ("train", lambda s: _edit(s.annotations, lambda d: d["annotations"][1].update(id=1)),
                                "annotation id 1 is used twice; annotation ids must be unique"),
    "unknown category": ("train", _set_annotation(category_id=9),
                         "annotation 1 has unknown category 9; the file's categories are [1]: correct the "
                         "annotation or add its category"),
    "unknown image": ("val", _set_annotation(image_id=99),
                      "annotation 1 points at unknown image 99; no image record has that id"),
    "category without a name": ("train", _drop("categories", "name"),
                                "category 1 lacks ['name']; each category needs 'id', 'name'"),
    "duplicate category id": ("train", lambda s: _edit(s.annotations, lambda d: d["categories"].append(
        {"id": 1, "name": "spot"})), "category id 1 is used twice ('dot' and 'spot'); category ids must be unique"),
    "val category unknown to train": ("val", _a_class_of_its_own,
                                      "categories [2] are not among the training split's ([1]); the model can only "
                                      "detect those"),
    "image of another size": ("train", _set_image(width=40),
                              "image 1 (0.png) is 32x32 but the file says 40x32; correct the record's width and "
                              "height"),
    "no train images": ("train", lambda s: write_coco(s.annotations, [], [], [{"id": 1, "name": "dot"}]),
                        "lists no images: there is nothing to train on"),
    "no val images": ("val", lambda s: write_coco(s.annotations, [], [], [{"id": 1, "name": "dot"}]),
                      "lists no images: training could neither be evaluated nor choose its best checkpoint; give "
                      "the val split images, or name one with --val-json and --val-images"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_each_damage_is_one_line_naming_the_file_and_record_before_anything_is_written(tmp_path, capsys, damage):
    splits = _clean(tmp_path)
    name, harm, said = DAMAGE[damage]
    harm(splits[name])
    line = _train(tmp_path, splits, capsys)
    assert str(splits[name].annotations) in line and said in line
    if "lists no images" not in said:  # a record's damage: the record comes right after the file's name
        assert f"{splits[name].annotations}: " in line


@pytest.mark.parametrize("harm, rest", [
    (_text_file_named_jpg, "replace the file or remove its record"),
    (_two_text_files_named_jpg, "1 more listed files are not images either; replace the files or remove their records"),
], ids=["one", "two"])
def test_text_files_named_jpg_are_named_with_their_record(tmp_path, capsys, harm, rest):
    splits = _clean(tmp_path)
    harm(splits["train"])
    assert _train(tmp_path, splits, capsys) == (
        f"detr train: error: {splits['train'].annotations}: image 1 (0.jpg) is not a readable image: "
        f"{splits['train'].images / '0.jpg'} (not a format PIL reads); {rest}")


def test_a_missing_image_file_is_named_with_its_record(tmp_path, capsys):
    splits = _clean(tmp_path)
    (splits["val"].images / "1.png").unlink()
    assert _train(tmp_path, splits, capsys) == (
        f"detr train: error: {splits['val'].annotations}: a listed image is missing from {splits['val'].images}, "
        "e.g. 1.png (image 2); check the images folder or the file names")


def test_the_undamaged_splits_pass_the_same_checks(tmp_path):
    """The damages above are what fails, not the splits they were made in."""
    splits = _clean(tmp_path)
    train, val = training_splits(splits["train"], splits["val"])
    assert list(train.records.images) == [1, 2] and len(val.records.annotations[2]) == 1
    assert train.records.annotations[1][0]["bbox"] == [4, 4, 10, 12]


def test_a_cut_short_json_is_called_so(tmp_path, capsys):
    splits = _clean(tmp_path)
    _truncate(splits["train"].annotations)
    assert "; it looks cut short: download or copy it again" in _train(tmp_path, splits, capsys)


def test_damage_found_through_a_dataset_folder_layout_is_one_line_too(tmp_path, capsys):
    """--data finds Roboflow's layout; the json it finds is checked before anything reads it."""
    for folder in ("train", "valid"):
        write_tiny_coco(tmp_path / "rf" / folder, tmp_path / "rf" / folder / "_annotations.coco.json")
    broken = tmp_path / "rf" / "valid" / "_annotations.coco.json"
    _edit(broken, lambda d: d["annotations"][1].pop("bbox"))
    assert main(["train", "--data", str(tmp_path / "rf"), "--out", str(tmp_path / "run"), "--device", "cpu",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"detr train: error: {broken}: annotation 2 lacks ['bbox']; each annotation needs "
                           "'image_id', 'category_id', 'bbox'")
    assert not (tmp_path / "run").exists()


def test_eval_names_the_damage_the_same_way(tmp_path, capsys):
    splits = _clean(tmp_path)
    _set_annotation(bbox=[4, 4, 10])(splits["val"])
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt", ["dot"])
    assert main(["eval", "--checkpoint", str(checkpoint), "--val-json", str(splits["val"].annotations),
                 "--val-images", str(splits["val"].images), "--out", str(tmp_path / "det.json"),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (tmp_path / "det.json").exists()
    assert err.strip() == (f"detr eval: error: {splits['val'].annotations}: annotation 1 (image 1) has bbox "
                           "[4, 4, 10]; a COCO bbox is 4 finite numbers [x, y, width, height]")
