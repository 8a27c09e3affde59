"""`detr bench budget`: trained runs scored, counted and timed in one table (the numbers it times
are not tested: it prints them)."""

import json

import pytest
import torch

from detr.bench.budget import Row, markdown, ratios, run_throughput
from detr.cli import main
from detr.config import CrowdBenchmarkConfig, SynthConfig
from detr.crowd.yolo_peer import RUN_FILE, read_yolo_run
from detr.data.synthetic import write_dataset

SMALL = ["--set", "model.hidden_dim=32", "model.num_heads=4", "model.feedforward_dim=64", "model.encoder_layers=1",
         "model.decoder_layers=1", "model.num_queries=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("budget")
    data = write_dataset(folder / "synth", SynthConfig(train_images=4, val_images=3))
    run = folder / "tiny"
    assert main(["train", "--data", str(data), "--out", str(run), "--preset", "small", "--epochs", "1",
                 "--batch-size", "2", "--workers", "0", "--no-progress", "--pictures", "0", *SMALL]) == 0
    return data, run


def test_a_run_gets_a_row_scored_on_its_val_images_and_timed_on_both_paths(trained, capsys):
    data, run = trained
    capsys.readouterr()
    assert main(["bench", "budget", "--data", str(data), "--detr", str(run), "--batches", "1", "2",
                 "--runs", "1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[-4:] == ["PyTorch b1 ms", "PyTorch b2 ms", "onnxruntime b1 ms", "onnxruntime b2 ms"]
    row = dict(zip(header, (cell.strip() for cell in lines[1].strip("|").split("|"))))
    state = torch.load(run / "last.pt", weights_only=True)
    assert row["detector"] == "DETR tiny" and state["images"] == 4
    seconds = state["elapsed"] - state["eval_seconds"]  # the checkpoint's clock without its evaluations
    assert 0 < seconds < state["elapsed"]
    assert row["train images/s"] == f"{4 / seconds:.1f}"  # its count over them
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert f"(AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = {row['AP']}" in summary  # best.pt, as `detr eval`
    assert all(float(row[name]) > 0 for name in header[-4:])


def test_a_run_that_did_not_count_its_images_has_no_throughput(trained, tmp_path):
    _, run = trained
    state = torch.load(run / "last.pt", weights_only=True)
    assert run_throughput(run) == pytest.approx(state["images"] / (state["elapsed"] - state["eval_seconds"]))
    del state["images"]  # as a checkpoint written before training counted them
    (tmp_path / "old").mkdir()
    torch.save(state, tmp_path / "old" / "last.pt")
    assert run_throughput(tmp_path / "old") is None


def test_a_folder_without_checkpoints_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["bench", "budget", "--detr", str(tmp_path)])
    assert f"{tmp_path} is not a `detr train` folder: it lacks best.pt and last.pt" in capsys.readouterr().err


def test_the_yolo_run_file_must_hold_what_the_row_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no yolo_run.json"):
        read_yolo_run(tmp_path)
    (tmp_path / RUN_FILE).write_text(json.dumps({"weights": "last.pt", "images": 10}))
    with pytest.raises(ValueError, match="lacks seconds, image_size"):
        read_yolo_run(tmp_path)


def _row(name, rate, ms):
    return Row(name, 1.0, 0.5, (192, 200), rate, 0.5, 0.8, 0.03,
               {(path, batch): ms for path in ("PyTorch", "onnxruntime") for batch in (1, 8)})


def test_ratios_against_the_peer_and_the_table_cells():
    ours, peer = _row("DETR a", 18.0, 12.0), _row("YOLOv8n", 36.0, 8.0)
    assert ratios(ours, peer, [1, 8]) == ("DETR a / YOLOv8n: train images/s 0.50; ms per image PyTorch b1 1.50, "
                                          "PyTorch b8 1.50, onnxruntime b1 1.50, onnxruntime b8 1.50")
    table = markdown([ours, _row("DETR b", None, 10.0)], [1, 8], 0.5)
    assert "| DETR a | 1.00 | 0.50 | 192x200 | 18.0 | 0.500 | 0.800 | 3% | 12.0 |" in table
    assert "| DETR b | 1.00 | 0.50 | 192x200 | - |" in table
    assert ratios(_row("DETR b", None, 10.0), peer, [1]).startswith("DETR b / YOLOv8n: train images/s -;")


def test_the_yolo_peer_trains_at_yolo_size_or_else_at_the_runs_val_short_side(trained, tmp_path, monkeypatch):
    data, run = trained
    sizes, seeds = [], []

    class Trained(Exception):
        pass

    def train_yolo_peer(data, minutes, image_size, out, seed):
        sizes.append(image_size)
        seeds.append(seed)
        raise Trained  # what the peer would train is all this test reads

    monkeypatch.setattr("detr.bench.budget.train_yolo_peer", train_yolo_peer)
    for extra in (["--yolo-size", "224", "--yolo-seed", "2"], []):
        with pytest.raises(Trained):
            main(["bench", "budget", "--data", str(data), "--detr", str(run), "--yolo-minutes", "1",
                  "--yolo-out", str(tmp_path / "yolo"), *extra])
    val_scale = torch.load(run / "best.pt", weights_only=True)["config"]["data"]["val_scale"]
    assert sizes == [224, val_scale] and val_scale != 224
    assert seeds == [2, CrowdBenchmarkConfig().seed] and CrowdBenchmarkConfig().seed != 2


def test_a_yolo_seed_without_a_peer_to_train_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["bench", "budget", "--detr", str(tmp_path), "--yolo-run", str(tmp_path), "--yolo-seed", "3"])
    assert "--yolo-seed seeds the peer --yolo-minutes trains" in capsys.readouterr().err


def test_a_yolo_size_without_a_peer_to_train_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["bench", "budget", "--detr", str(tmp_path), "--yolo-run", str(tmp_path), "--yolo-size", "224"])
    assert "--yolo-size is the input --yolo-minutes trains the peer at" in capsys.readouterr().err
