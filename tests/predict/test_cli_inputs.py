"""`detr predict` as a user runs it: mixed image modes and sizes, --format voc, phone photos, re-runs."""

import logging
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from detr.cli import main
from detr.data.coco import load_image
from detr.inference import Predictor, to_uint8_image
from detr.predict.formats import Prediction, voc_tree
from tests.conftest import save_tiny_checkpoint

CLASSES = ["ant", "bee"]
EXIF_ORIENTATION = 0x0112  # 6: the stored picture is to be turned 90 degrees clockwise to view


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", CLASSES)


def _pixels(rng, *shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _phone_photo(path, rng):
    """A JPEG stored 60 wide and 20 high whose EXIF says to show it turned: 20 wide, 60 high."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(_pixels(rng, 20, 60, 3)).save(path, exif=exif)


def _mixed_folder(folder):
    """Grey, RGBA, JPEG (upper-case suffix) and an EXIF-turned photo, all of different sizes."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    Image.fromarray(_pixels(rng, 40, 60), "L").save(folder / "grey.png")
    Image.fromarray(_pixels(rng, 50, 30, 4), "RGBA").save(folder / "rgba.png")
    Image.fromarray(_pixels(rng, 33, 77, 3)).save(folder / "photo.JPG", quality=90)
    _phone_photo(folder / "phone.jpg", rng)
    return {"grey": (60, 40), "rgba": (30, 50), "photo": (77, 33), "phone": (20, 60)}  # width, height


def test_a_phone_photo_is_read_upright_for_prediction_only(tmp_path):
    _phone_photo(tmp_path / "phone.jpg", np.random.default_rng(1))
    stored = torch.from_numpy(np.array(load_image(tmp_path / "phone.jpg"))).permute(2, 0, 1)
    assert stored.shape == (3, 20, 60)  # datasets keep the pixels their boxes were drawn on
    # Clockwise by 90 degrees: the stored bottom-left pixel becomes the top-left one.
    assert torch.equal(to_uint8_image(tmp_path / "phone.jpg"), torch.rot90(stored, -1, dims=(1, 2)))


def test_voc_through_the_cli_on_a_folder_of_mixed_images(checkpoint, tmp_path):
    sizes = _mixed_folder(tmp_path / "mixed")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "mixed"), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--threshold", "0", "--format", "voc", "--no-progress"]) == 0
    assert sorted(p.stem for p in (out / "voc").glob("*.xml")) == sorted(sizes)
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    for path in (tmp_path / "mixed").iterdir():
        width, height = sizes[path.stem]
        with Image.open(out / f"{path.stem}.png") as drawn:  # upscaled to a short side of 384 to draw
            assert drawn.mode == "RGB" and drawn.size[0] * height == drawn.size[1] * width
        detections = predictor.predict(path, threshold=0.0)
        assert len(detections.scores) == 6  # threshold 0 keeps every query
        expected = voc_tree(Prediction(path.stem, path, width, height, 3, detections))
        written = (out / "voc" / f"{path.stem}.xml").read_text(encoding="utf-8")
        assert written.split("?>", 1)[1].strip() == ET.tostring(expected.getroot(), "unicode").strip()


def test_a_rerun_into_an_output_folder_inside_the_input_reads_only_the_inputs(checkpoint, tmp_path, caplog):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(2)
    for i in (1, 2, 10):
        Image.fromarray(_pixels(rng, 32, 48, 3)).save(frames / f"frame_{i}.png")
    out = frames / "predicted"
    command = ["predict", str(frames), "--checkpoint", str(checkpoint), "--out", str(out), "--format", "yolo",
               "--threshold", "0.5", "--no-progress"]
    assert main(command) == 0
    first = {p.name: p.read_bytes() for p in out.rglob("*.txt")}
    with caplog.at_level(logging.INFO, logger="detr.predict.run"):
        assert main(command) == 0  # the pictures the first run drew are not inputs of the second
    assert sorted(p.name for p in out.glob("*.png")) == ["frame_1.png", "frame_10.png", "frame_2.png"]
    assert {p.name: p.read_bytes() for p in out.rglob("*.txt")} == first
    assert "skipped 3 files in the output folder" in caplog.text


def test_an_output_folder_holding_every_input_is_refused(checkpoint, tmp_path, capsys):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path), "--checkpoint", str(checkpoint), "--out", str(tmp_path),
                 "--no-progress"]) == 1
    error = capsys.readouterr().err.strip()
    assert "every input is in the output folder" in error and "choose another --out" in error
    assert len(error.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # nothing overwritten or written
