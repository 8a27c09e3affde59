"""`detr bench latency` runs end to end (the numbers are not tested: it prints a table)."""

import pytest
import torch

from detr.cli import main
from detr.config import SynthConfig
from detr.data.synthetic import write_dataset


@pytest.mark.parametrize("tiles", [False, True])
def test_latency_benchmark_times_each_path_at_each_batch(tiles, tmp_path, capsys, monkeypatch):
    """PyTorch and onnxruntime always; PyTorch in bf16 too on a CPU with AMX tiles."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: tiles)
    data = write_dataset(tmp_path / "synth", SynthConfig(train_images=4, val_images=3))
    assert main(["bench", "latency", "--quick", "--data", str(data), "--preset", "small"]) == 0
    printed = capsys.readouterr().out
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in printed.splitlines()
            if line.startswith(("| PyTorch", "| onnxruntime"))]
    paths = ["PyTorch", "onnxruntime"] + (["PyTorch bf16"] if tiles else [])
    assert [(row[0], row[1]) for row in rows] == [(path, batch) for path in paths for batch in ("1", "2")]
    assert all(float(row[2]) > 0 and row[3] == "-" for row in rows)  # no YOLO asked for: its cells stay empty
    assert "GFLOPs at" in printed and "PyTorch / onnxruntime" in printed


def test_interleaved_cells_each_get_their_runs_spread_over_rounds(monkeypatch):
    """Every cell gets two warm-up calls and `runs` timed ones, visited in ROUNDS rounds through all
    the cells (not one cell's calls in a row), each visit after an untimed call; it gives its median
    ms per image."""
    from detr.bench import latency

    clock, calls = [0.0], []

    def cell(name, seconds):
        def call():
            calls.append(name)
            clock[0] += seconds
        return call

    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])
    cells = {"a": (cell("a", 0.008), 2), "b": (cell("b", 0.003), 1), "c": (cell("c", 0.010), 5)}
    ms = latency.interleaved_ms(cells, runs=7)
    assert ms == pytest.approx({"a": 4.0, "b": 3.0, "c": 2.0})
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # the warm-ups
    timed = calls[6:]
    assert all(timed.count(name) == 7 + latency.ROUNDS for name in "abc")
    switches = sum(x != y for x, y in zip(timed, timed[1:]))
    assert switches >= 3 * latency.ROUNDS - 1  # every round visits every cell
