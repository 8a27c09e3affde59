"""`detr visualize` end to end on a tiny checkpoint and a tiny built-in dataset."""

import shutil

import pytest

from tests.viz.conftest import visualize

ALL_FIGURES = {"detections.png", "decoder_attention.png", "losing_queries.png", "encoder_attention.png",
               "positional_encoding.png", "query_specialisation.png", "matching.png"}


def test_dataset_root_gives_every_figure(dataset_gallery):
    out, printed = dataset_gallery
    assert {p.name for p in out.glob("*.png")} == ALL_FIGURES
    index = (out / "index.html").read_text()
    for name in ALL_FIGURES:
        assert f'src="{name}"' in index
    assert "Hungarian matching" in index and str(out / "index.html") in printed


def test_image_points_layer_per_head_and_annotations(data, checkpoint, tmp_path):
    out = tmp_path / "gallery"
    image = sorted((data / "val" / "images").iterdir())[1]
    visualize([str(image), "--checkpoint", str(checkpoint), "--out", str(out), "--layer", "0", "--per-head",
               "--points", "10,10", "64,64", "--annotations", str(data / "val" / "annotations.json"),
               "--threshold", "0.3"])
    assert {p.name for p in out.glob("*.png")} == ALL_FIGURES - {"query_specialisation.png"}
    assert "000001.png (128x128), model input 64x64" in (out / "index.html").read_text()


def test_clear_errors(data, checkpoint, tmp_path):
    image = str(sorted((data / "val" / "images").iterdir())[0])
    with pytest.raises(ValueError, match="layer 5 does not exist: the model has 2 encoder layers"):
        visualize([image, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "g"), "--layer", "5"])
    assert not (tmp_path / "g").exists()
    with pytest.raises(ValueError, match="give an IMAGE"):
        visualize(["--checkpoint", str(checkpoint)])
    images = tmp_path / "images"
    shutil.copytree(data / "val" / "images", images)
    shutil.copy(image, images / "unlisted.png")
    with pytest.raises(ValueError, match="has no image named unlisted.png"):
        visualize([str(images / "unlisted.png"), "--checkpoint", str(checkpoint), "--annotations",
                   str(data / "val" / "annotations.json")])
    with pytest.raises(SystemExit):
        visualize([image, "--checkpoint", str(checkpoint), "--points", "3;4"])
