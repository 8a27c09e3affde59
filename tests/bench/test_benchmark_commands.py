"""The benchmark commands run end to end (at toy sizes: they print tables, the numbers are not tested)."""

import pytest

from detr.cli import main

pytest.importorskip("transformers")
pytest.importorskip("timm")


def test_inference_benchmark_prints_a_row_per_batch(capsys):
    assert main(["benchmark", "inference", "--batch", "1", "2", "--height", "64", "--width", "96",
                 "--runs", "1", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(float(row[6]) < 1e-4 for row in rows)  # same weights: logits agree


def test_training_benchmark_compares_losses(capsys):
    assert main(["benchmark", "training", "--batch", "1", "--height", "64", "--width", "96", "--runs", "1",
                 "--warmup", "0", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "HF/ours step time" in printed
    difference = float(printed.rsplit("|loss difference|", 1)[1].split()[0])
    assert difference < 1e-3  # transformers' loss and ours agree on the same batch
