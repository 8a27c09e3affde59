"""train -> checkpoint -> resume -> eval -> predict, through the `detr` command."""

import json
import math

import pytest
import torch

from detr.cli import main
from detr.engine.checkpoint import load_checkpoint
from tests.test_precision import model_forwards_seen

TINY = ["--epochs", "2", "--batch-size", "4", "--workers", "0", "--no-progress", "--eval-every", "1",
        "--pictures", "2"]


@pytest.fixture(scope="module")
def straight_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "straight"
    assert main(["train", "--data", str(tiny_data), "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_checkpoints_logs_and_pictures(straight_run, capsys):
    for name in ("last.pt", "best.pt", "metrics.jsonl", "val_detections.json", "predictions/detections.json"):
        assert (straight_run / name).exists(), name
    assert list((straight_run / "tensorboard").iterdir())
    assert len(list((straight_run / "predictions").glob("*.png"))) == 2
    payload = load_checkpoint(straight_run / "last.pt")
    assert payload["epoch"] == 2 and payload["categories"]["names"] == ["circle", "square", "triangle", "cross"]
    assert payload["images"] == 2 * 12  # two epochs of tiny_data's 12 train images
    evals = [json.loads(line) for line in (straight_run / "metrics.jsonl").read_text().splitlines()
             if "val_AP" in line]
    assert [e["epoch"] for e in evals] == [1, 2]


def test_resume_continues_the_same_run(straight_run, tiny_data, tmp_path):
    out = tmp_path / "resumed"
    one_epoch = [a if a != "2" else "1" for a in TINY]
    assert main(["train", "--data", str(tiny_data), "--out", str(out), *one_epoch]) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert main(["train", "--data", str(tiny_data), "--out", str(out), "--resume", str(out / "last.pt"),
                 *TINY]) == 0
    resumed, straight = load_checkpoint(out / "last.pt"), load_checkpoint(straight_run / "last.pt")
    assert resumed["step"] == straight["step"] and resumed["images"] == straight["images"]
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name


def test_eval_prints_summary_and_per_class_table(straight_run, tiny_data, tmp_path, capsys):
    results = tmp_path / "dets.json"
    assert main(["eval", "--checkpoint", str(straight_run / "best.pt"), "--data", str(tiny_data),
                 "--out", str(results), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in printed and "triangle" in printed
    records = json.loads(results.read_text())
    assert records and {"image_id", "category_id", "bbox", "score"} <= set(records[0])


def test_eval_reads_class_pairs_unless_told_one_class_per_query(straight_run, tiny_data, tmp_path):
    """The default preset ranks (query, class) pairs, so an image gets more detections than
    queries; --class-pairs 0 gives the paper's reading, one per query."""
    queries = load_checkpoint(straight_run / "best.pt")["config"]["model"]["num_queries"]
    per_image = {}
    for pairs in (None, "0"):
        results = tmp_path / f"{pairs}.json"
        flags = [] if pairs is None else ["--class-pairs", pairs]
        assert main(["eval", "--checkpoint", str(straight_run / "best.pt"), "--data", str(tiny_data),
                     "--out", str(results), "--no-progress", *flags]) == 0
        counts = {}
        for record in json.loads(results.read_text()):
            counts[record["image_id"]] = counts.get(record["image_id"], 0) + 1
        per_image[pairs] = counts
    assert set(per_image["0"].values()) == {queries}
    assert min(per_image[None].values()) > queries


def test_eval_in_bf16_runs_the_model_under_bf16_autocast_and_writes_its_records(straight_run, tiny_data, tmp_path):
    """--precision reaches the model: bf16 autocast inside its forward, its weights still fp32, and
    the records written as in fp32. Which boxes bf16 keeps is not compared: the default preset's
    top-k, NMS and (query, class) pairs may turn a rounding into another box (test_precision.py
    bounds bf16's numbers on the paper's model, which has no such steps)."""
    records = {}
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        results = tmp_path / f"{precision}.json"
        with model_forwards_seen() as seen:
            assert main(["eval", "--checkpoint", str(straight_run / "best.pt"), "--data", str(tiny_data),
                         "--out", str(results), "--no-progress", "--precision", precision]) == 0
        assert seen and all(s["autocast"] == dtype and s["weights"] == {torch.float32} for s in seen), seen
        records[precision] = json.loads(results.read_text())
    fp32, bf16 = records["fp32"], records["bf16"]
    assert fp32 and len(bf16) == len(fp32) and {r["image_id"] for r in bf16} == {r["image_id"] for r in fp32}
    assert all(0 <= r["score"] <= 1 and all(math.isfinite(v) for v in r["bbox"]) for r in bf16)


def test_predict_images_and_folders(straight_run, tiny_data, tmp_path):
    folder = tiny_data / "val" / "images"
    one = sorted(folder.iterdir())[0]
    out = tmp_path / "pred"
    assert main(["predict", str(one), str(folder), "--checkpoint", str(straight_run / "best.pt"),
                 "--out", str(out), "--threshold", "0.0", "--no-progress"]) == 0
    records = json.loads((out / "detections.json").read_text())
    assert len(records) == 5
    assert {"boxes", "scores", "labels", "names"} <= set(records[0])
    assert len(records[0]["boxes"]) > 0  # threshold 0 keeps every query


def test_clear_errors(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path)]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing.png"), "--checkpoint", str(tmp_path / "x.pt")]) == 1
    assert main(["train", "--data", str(tmp_path), "--no-progress"]) == 1
    assert "no 'train' split under" in capsys.readouterr().err


def test_eval_of_the_exported_graph_gives_the_checkpoints_detections(straight_run, tiny_data, tmp_path, capsys):
    """`detr eval --onnx`: the graph `detr export` wrote, scored like its checkpoint, same records."""
    graph = tmp_path / "model.onnx"
    assert main(["export", str(straight_run / "best.pt"), str(graph)]) == 0
    records = {}
    for flag, source in (("--checkpoint", straight_run / "best.pt"), ("--onnx", graph)):
        results = tmp_path / f"{flag[2:]}.json"
        assert main(["eval", flag, str(source), "--data", str(tiny_data), "--out", str(results), "--no-progress"]) == 0
        assert "Average Precision  (AP) @[ IoU=0.50:0.95" in capsys.readouterr().out
        records[flag] = sorted(json.loads(results.read_text()), key=lambda r: (r["image_id"], -r["score"]))
    eager, exported = records["--checkpoint"], records["--onnx"]
    assert eager and len(exported) == len(eager)
    for a, b in zip(eager, exported):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert abs(a["score"] - b["score"]) < 1e-3 and max(abs(x - y) for x, y in zip(a["bbox"], b["bbox"])) < 0.05
    assert main(["eval", "--onnx", str(graph), "--data", str(tiny_data), "--precision", "bf16"]) == 1
    assert "--onnx runs in onnxruntime on the CPU in fp32" in capsys.readouterr().err
