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

