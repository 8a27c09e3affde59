"""`detr predict` on a folder of frames and on a video: drawn frames plus one record per frame."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from detr.cli import main
from detr.data.coco import DatasetError
from detr.inference import Predictor
from detr.predict.formats import Prediction, yolo_lines
from detr.predict.frames import collect_inputs, video_frames
from tests.conftest import save_tiny_checkpoint

CLASSES = ["ant", "bee"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", CLASSES)


def random_frames(count: int, seed: int = 0) -> list[np.ndarray]:
    return list(np.random.default_rng(seed).integers(0, 256, (count, 32, 48, 3), dtype=np.uint8))


def test_frame_folder_in_natural_order(tmp_path):
    for i in (10, 2, 1):
        Image.new("RGB", (8, 8)).save(tmp_path / f"frame_{i}.png")
    assert [p.name for p in collect_inputs([tmp_path])] == ["frame_1.png", "frame_2.png", "frame_10.png"]


def test_predict_on_frames_writes_a_picture_and_a_record_per_frame(checkpoint, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, pixels in enumerate(random_frames(3)):
        Image.fromarray(pixels).save(frames / f"f{i}.png")
    out = tmp_path / "out"
    assert main(["predict", str(frames), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--threshold", "0", "--format", "yolo", "--no-progress"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["f0.png", "f1.png", "f2.png"]
    assert (out / "yolo" / "classes.txt").read_text().splitlines() == CLASSES
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    for i in range(3):
        detections = predictor.predict(frames / f"f{i}.png", threshold=0.0)
        assert len(detections.scores) == 6  # threshold 0 keeps every query
        expected = yolo_lines(Prediction(f"f{i}", frames / f"f{i}.png", 48, 32, 3, detections))
        assert (out / "yolo" / "labels" / f"f{i}.txt").read_text().splitlines() == expected


def test_video_without_pyav_is_a_one_line_error(tmp_path, monkeypatch, capsys, checkpoint):
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    (tmp_path / "clip.mp4").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"clip.mp4: reading videos needs PyAV: pip install av"):
        next(video_frames(tmp_path / "clip.mp4"))
    assert main(["predict", str(tmp_path / "clip.mp4"), "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "out")]) == 1
    assert "pip install av" in capsys.readouterr().err


def test_video_gives_drawn_frames_and_a_record_per_frame(checkpoint, tmp_path):
    av = pytest.importorskip("av")  # the optional `video` extra
    originals = random_frames(4, seed=1)
    path = tmp_path / "clip.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=5)  # lossless, so frames read back exactly
        stream.width, stream.height, stream.pix_fmt = 48, 32, "bgr0"
        for pixels in originals:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    decoded = list(video_frames(path))
    assert len(decoded) == 4
    for frame, pixels in zip(decoded, originals):
        assert torch.equal(frame, torch.from_numpy(pixels).permute(2, 0, 1))
    out = tmp_path / "out"
    assert main(["predict", str(path), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--threshold", "0", "--no-progress"]) == 0
    records = json.loads((out / "detections.json").read_text())
    assert [(r["video"], r["frame"]) for r in records] == [(str(path), i) for i in range(4)]
    assert sorted(p.name for p in out.glob("*.png")) == [f"clip_{i:06d}.png" for i in range(4)]
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    assert records[2]["scores"] == predictor.predict(originals[2], threshold=0.0).to_dict()["scores"]
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(DatasetError, match="cannot read video .*bad.mp4"):
        next(video_frames(tmp_path / "bad.mp4"))
